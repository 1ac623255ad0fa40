//! Archives named as Kafka Connect's S3 and file sinks name them
//! (`<topic>+<partition>+<start offset>.<ext>`, in any folders, such as
//! `partition=<p>/`): each file holds one partition's records from its
//! start offset on, one per line. Their records go to that partition, and
//! Kafka takes over, per partition, right after the last archived record:
//! no timestamps involved, no record read twice or skipped.
//!
//! The hand-off counts records, not offsets: from the start offset of a
//! partition's last archived file, the consumer skips as many records as
//! the file holds (transaction markers take offsets but are no records, so
//! offsets alone would land short) and Kafka starts at the next one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::checks::reader;
use crate::kafka::external;
use crate::source::file::{DoneFile, FilePosition};
use crate::source::kafka::KafkaSourceSpec;
use crate::{Error, Result};

/// Longest the hand-off may take to count the archived records in Kafka.
const COUNT_TIME: Duration = Duration::from_secs(60);

/// What a Connect-named file's name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectName {
    /// The topic it archives.
    pub topic: String,
    /// Its partition.
    pub partition: usize,
    /// The offset of its first record.
    pub start: i64,
}

/// Parse `name` (a path within the archive) as Kafka Connect names its
/// files; `None` when it is not named so.
pub(crate) fn connect_name(name: &str) -> Option<ConnectName> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let mut parts = base.split('+');
    let (topic, partition, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || topic.is_empty() {
        return None;
    }
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (offset, ext) = rest.split_at(digits);
    if offset.is_empty() || !(ext.is_empty() || ext.starts_with('.')) {
        return None;
    }
    if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(ConnectName {
        topic: topic.to_string(),
        partition: partition.parse().ok()?,
        start: offset.parse().ok()?,
    })
}

/// How a folder's files are named, for a hybrid over `topic`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Naming {
    /// No file is Connect-named: records are routed by their keys.
    Plain,
    /// Every file is a Connect-named file of `topic`: records go to the
    /// partition in their file's name.
    Connect,
}

/// Decide how `names` are named; refuse an archive of another topic, a
/// mix of Connect-named and other files, or a partition the topic lacks.
pub(crate) fn naming(names: &[String], topic: &str, partitions: usize) -> Result<Naming> {
    let parsed: Vec<(&String, Option<ConnectName>)> =
        names.iter().map(|n| (n, connect_name(n))).collect();
    let Some((first, _)) = parsed.iter().find(|(_, c)| c.is_some()) else {
        return Ok(Naming::Plain);
    };
    let refuse = |detail: String| Err(Error::Config(format!("[source.files] {detail}")));
    if let Some((other, _)) = parsed.iter().find(|(_, c)| c.is_none()) {
        return refuse(format!(
            "holds files named as Kafka Connect names them (`{first}`) and others \
             (`{other}`): an archive of a topic is all one or the other; move the others out"
        ));
    }
    for (name, c) in &parsed {
        let Some(c) = c else { continue };
        if c.topic != topic {
            return refuse(format!(
                "`{name}` archives topic `{}`, not `{topic}`, the topic this job reads live",
                c.topic
            ));
        }
        if c.partition >= partitions {
            return refuse(format!(
                "`{name}` archives partition {} of `{topic}`, which has {partitions} \
                 partitions now: the archive is of a topic with more partitions",
                c.partition
            ));
        }
    }
    Ok(Naming::Connect)
}

/// Per partition of a Connect-named archive: the start offset of the last
/// file read (wholly or in part) and the records read from it.
pub(crate) type ArchiveEnds = BTreeMap<usize, (i64, u64)>;

/// Where the files of `position` end in their partitions, when they are
/// Connect-named files of `topic`; `Ok(None)` when none is.
pub(crate) fn archive_ends(
    position: &FilePosition,
    topic: &str,
) -> std::result::Result<Option<ArchiveEnds>, String> {
    let mut read: Vec<(&str, u64)> = Vec::new();
    for d in position.done.as_deref().unwrap_or_default() {
        match d {
            DoneFile::Read { name, lines, .. } => read.push((name, *lines)),
            DoneFile::Name(name) => {
                if connect_name(name).is_some() {
                    return Err(format!(
                        "it records `{name}` as read without its line count (an older \
                         position): the records it holds cannot be counted"
                    ));
                }
            }
        }
    }
    if let Some(file) = &position.file
        && !read.iter().any(|(n, _)| n == file)
    {
        read.push((file, position.line));
    }
    let mut ends = ArchiveEnds::new();
    let mut plain = None;
    for (name, lines) in read {
        let Some(c) = connect_name(name) else {
            plain = Some(name);
            continue;
        };
        if c.topic != topic {
            return Err(format!(
                "it read `{name}`, an archive of topic `{}`, not `{topic}`",
                c.topic
            ));
        }
        let end = ends.entry(c.partition).or_insert((c.start, lines));
        if c.start > end.0 {
            *end = (c.start, lines);
        }
    }
    match (ends.is_empty(), plain) {
        (true, _) => Ok(None),
        (false, Some(p)) => Err(format!(
            "it read Connect-named files and others (`{p}`): no hand-off per partition"
        )),
        (false, None) => Ok(Some(ends)),
    }
}

/// The offset, per partition of the topic, of the first record after the
/// archive: after the `n` records from start offset `s` of each
/// partition's last file, or the partition's first offset where nothing of
/// it is archived. Refuses when retention deleted records the archive does
/// not hold, or the archive holds records the topic never had.
pub(crate) fn next_offsets(spec: &KafkaSourceSpec, ends: &ArchiveEnds) -> Result<Vec<i64>> {
    let (consumer, ranges) = reader(spec)?;
    let topic = &spec.topic;
    let gap = |p: usize, from: i64, lo: i64| {
        Error::Config(format!(
            "[source] partition {p} of topic {topic} starts at offset {lo}, but the archive \
             ends before offset {from}: retention deleted records the archive does not hold. \
             Archive them, or set [source.kafka] start or start_offsets to accept the gap"
        ))
    };
    let mut next: Vec<i64> = ranges.iter().map(|r| r.0).collect();
    // Partitions whose records are to be counted: (start, records).
    let mut count: BTreeMap<usize, (i64, u64)> = BTreeMap::new();
    for (p, &(lo, hi)) in ranges.iter().enumerate() {
        match ends.get(&p) {
            None if lo > 0 => return Err(gap(p, 0, lo)),
            None => {}
            Some(&(s, 0)) if s < lo => return Err(gap(p, s, lo)),
            Some(&(s, 0)) => next[p] = s,
            Some(&(s, n)) if s < lo => {
                // The archived records are gone from the topic: count by
                // offsets.
                let after = s.saturating_add(n as i64);
                if after < lo {
                    return Err(gap(p, after, lo));
                }
                next[p] = after;
            }
            Some(&(s, _)) if s >= hi => {
                return Err(Error::Config(format!(
                    "[source] the archive holds partition {p} of topic {topic} from offset \
                     {s}, but the topic's log ends at {hi}: it is an archive of another (or \
                     a recreated) topic"
                )));
            }
            Some(&(s, n)) => {
                count.insert(p, (s, n));
            }
        }
    }
    if count.is_empty() {
        return Ok(next);
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &(s, _)) in &count {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(s))
            .map_err(external("assigning a partition"))?;
    }
    consumer
        .assign(&tpl)
        .map_err(external(format!("reading {topic}")))?;
    let mut seen: BTreeMap<usize, u64> = count.keys().map(|&p| (p, 0)).collect();
    let deadline = Instant::now() + COUNT_TIME;
    while !count.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::Config(format!(
                "[source] counting the archived records of topic {topic} in Kafka took over \
                 {COUNT_TIME:?} (partitions {:?} not done)",
                count.keys().collect::<Vec<_>>()
            )));
        }
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            // Nothing more to read: check whether a partition's log ended
            // before its archived records did.
            for (&p, &(s, n)) in &count {
                let (_, hi) = consumer
                    .fetch_watermarks(topic, p as i32, crate::kafka::REQUEST_TIMEOUT)
                    .map_err(external(format!("offsets of {topic} partition {p}")))?;
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|t| t.find_partition(topic, p as i32).map(|e| e.offset()));
                if let Some(Offset::Offset(o)) = position
                    && o >= hi
                {
                    return Err(Error::Config(format!(
                        "[source] the archive holds {n} records of partition {p} of topic \
                         {topic} from offset {s}, but the topic has only {} there: it is an \
                         archive of another (or a recreated) topic",
                        seen[&p]
                    )));
                }
            }
            continue;
        };
        let m = m.map_err(external(format!("reading {topic}")))?;
        let p = m.partition() as usize;
        let Some(&(_, n)) = count.get(&p) else {
            continue;
        };
        let k = seen.entry(p).or_insert(0);
        *k += 1;
        if *k == n {
            next[p] = m.offset() + 1;
            count.remove(&p);
            let mut left = TopicPartitionList::new();
            left.add_partition(topic, p as i32);
            let _ = consumer.pause(&left);
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_names_carry_topic_partition_and_start_offset() {
        let c = connect_name("topics/events/partition=3/events+3+0000001200.json").unwrap();
        assert_eq!(
            c,
            ConnectName {
                topic: "events".into(),
                partition: 3,
                start: 1200
            }
        );
        assert_eq!(connect_name("my.topic+0+0.csv").unwrap().topic, "my.topic");
        assert_eq!(connect_name("t+1+42").unwrap().start, 42);
        for not in [
            "events.csv",
            "events+x+1.csv",
            "events+1+.csv",
            "events+1+2+3.csv",
            "+1+2.csv",
            "events+1+12abc",
        ] {
            assert_eq!(connect_name(not), None, "{not}");
        }
    }

    #[test]
    fn a_folder_is_an_archive_of_the_topic_or_plain_files_never_both() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            naming(&names(&["a.csv", "b.csv"]), "t", 4).unwrap(),
            Naming::Plain
        );
        assert_eq!(
            naming(&names(&["p=0/t+0+0.csv", "p=1/t+1+0.csv"]), "t", 4).unwrap(),
            Naming::Connect
        );
        let err = naming(&names(&["t+0+0.csv", "b.csv"]), "t", 4).unwrap_err();
        assert!(err.to_string().contains("and others"), "{err}");
        let err = naming(&names(&["u+0+0.csv"]), "t", 4).unwrap_err();
        assert!(err.to_string().contains("archives topic `u`"), "{err}");
        let err = naming(&names(&["t+4+0.csv"]), "t", 4).unwrap_err();
        assert!(err.to_string().contains("has 4 partitions"), "{err}");
    }

    #[test]
    fn a_position_ends_each_partition_at_its_last_file_read() {
        let read = |name: &str, lines: u64| DoneFile::Read {
            name: name.into(),
            size: 1,
            lines,
            tail: String::new(),
            etag: None,
        };
        let position = FilePosition {
            file: Some("partition=1/t+1+0000000300.csv".into()),
            line: 7,
            done: Some(vec![
                read("partition=0/t+0+0000000000.csv", 100),
                read("partition=0/t+0+0000000100.csv", 50),
                read("partition=1/t+1+0000000000.csv", 300),
            ]),
            ..FilePosition::default()
        };
        let ends = archive_ends(&position, "t").unwrap().unwrap();
        assert_eq!(ends[&0], (100, 50));
        assert_eq!(ends[&1], (300, 7));
        assert!(!ends.contains_key(&2));
        let plain = FilePosition {
            file: Some("a.csv".into()),
            ..FilePosition::default()
        };
        assert_eq!(archive_ends(&plain, "t").unwrap(), None);
        let err = archive_ends(&position, "u").unwrap_err();
        assert!(err.contains("not `u`"), "{err}");
    }
}
