//! The file sink's states of a restore point moved onto another number of
//! partitions (a rescaled restore). Part files keep their names: old
//! partition `p`'s files are covered from then on by new partition
//! `p % partitions`, so the restore point's output stays exactly what it
//! committed, and each new partition numbers its next part file past every
//! covered file that carries its partition number, so no name is written
//! twice.

use super::parse_name;
use super::record::FileSinkState;

/// `states` (one per old partition; `None`: nothing written) onto
/// `partitions` partitions. Refused for a state of an earlier version,
/// which lists no files (its coverage is the folder's files by partition
/// number, which cannot move).
pub(super) fn rescale(
    states: &[Option<FileSinkState>],
    partitions: usize,
) -> Result<Vec<FileSinkState>, String> {
    let mut out: Vec<FileSinkState> = (0..partitions)
        .map(|_| FileSinkState {
            files: Some(Vec::new()),
            ..FileSinkState::default()
        })
        .collect();
    for (p, state) in states.iter().enumerate() {
        let Some(state) = state else { continue };
        let Some(files) = &state.files else {
            return Err(format!(
                "its file sink state of partition {p} was written by an earlier Weir version \
                 that did not list the part files, so it cannot move to other partitions: \
                 restore it with its {} partitions, take a new savepoint, and rescale that one",
                states.len()
            ));
        };
        let to = &mut out[p % partitions];
        to.files
            .get_or_insert_default()
            .extend(files.iter().cloned());
        to.pending.extend(state.pending.iter().cloned());
        if p < partitions {
            to.next_seq = to.next_seq.max(state.next_seq);
        }
    }
    // Past every covered name with the new partition's number.
    let names: Vec<(usize, u64)> = out
        .iter()
        .flat_map(|s| {
            let files = s.files.iter().flatten().map(|r| r.name.as_str());
            files.chain(s.pending.iter().map(String::as_str))
        })
        .filter_map(|n| parse_name(n).map(|(p, seq, _)| (p, seq)))
        .collect();
    for (p, seq) in names {
        if let Some(s) = out.get_mut(p) {
            s.next_seq = s.next_seq.max(seq + 1);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::part_name;
    use super::super::record::PartRecord;
    use super::*;

    fn state(p: usize, seqs: &[u64], next_seq: u64) -> Option<FileSinkState> {
        let files = seqs
            .iter()
            .map(|&s| PartRecord {
                name: part_name(p, s),
                size: 1,
                sha256: format!("{p}-{s}"),
            })
            .collect();
        Some(FileSinkState {
            next_seq,
            pending: Vec::new(),
            files: Some(files),
        })
    }

    fn names(s: &FileSinkState) -> Vec<String> {
        s.files.iter().flatten().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn shrinking_keeps_every_file_covered_and_numbers_past_them() {
        let old = [
            state(0, &[0, 1], 2),
            state(1, &[0], 1),
            state(2, &[0, 1, 2], 3),
            None,
        ];
        let new = rescale(&old, 2).unwrap();
        assert_eq!(new.len(), 2);
        assert_eq!(
            names(&new[0]),
            ["part-0000-000000.jsonl", "part-0000-000001.jsonl"]
                .into_iter()
                .chain([
                    "part-0002-000000.jsonl",
                    "part-0002-000001.jsonl",
                    "part-0002-000002.jsonl"
                ])
                .collect::<Vec<_>>()
        );
        assert_eq!(names(&new[1]), ["part-0001-000000.jsonl"]);
        assert_eq!((new[0].next_seq, new[1].next_seq), (2, 1));
        // And back to four: partition 2 writes after its old files.
        let back: Vec<_> = new.into_iter().map(Some).collect();
        let four = rescale(&back, 4).unwrap();
        assert_eq!(
            four.iter().map(|s| s.next_seq).collect::<Vec<_>>(),
            [2, 1, 3, 0]
        );
        let all: usize = four.iter().map(|s| names(s).len()).sum();
        assert_eq!(all, 6, "every file stays covered");
    }

    #[test]
    fn growing_gives_new_partitions_a_fresh_sequence() {
        let old = [state(0, &[0], 1), state(1, &[0, 1], 2)];
        let new = rescale(&old, 4).unwrap();
        assert_eq!(
            names(&new[1]),
            ["part-0001-000000.jsonl", "part-0001-000001.jsonl"]
        );
        assert!(names(&new[2]).is_empty() && names(&new[3]).is_empty());
        assert_eq!(
            new.iter().map(|s| s.next_seq).collect::<Vec<_>>(),
            [1, 2, 0, 0]
        );
    }

    #[test]
    fn a_state_without_its_file_list_is_refused() {
        let old = [
            state(0, &[0], 1),
            Some(FileSinkState {
                next_seq: 3,
                pending: Vec::new(),
                files: None,
            }),
        ];
        let err = rescale(&old, 3).unwrap_err();
        assert!(
            err.contains("partition 1") && err.contains("earlier"),
            "{err}"
        );
    }
}
