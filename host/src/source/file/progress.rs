//! The file source's figures for progress: the files and bytes listed,
//! and, at the first listing of a run, what a restored checkpoint (or
//! `start_at`) already counts as read.

use super::{DoneFile, Entry, FileSource};

impl FileSource {
    /// Publish the totals of the listing `entries`; on the `first` pass of
    /// the run, first what is read already: the files done (their size as
    /// read) and the offset `resume` starts at.
    pub(super) fn publish_listing(
        &self,
        entries: &[Entry],
        resume: Option<&(String, u64, u64)>,
        first: bool,
    ) {
        if first {
            let read = entries
                .iter()
                .map(|e| match self.done.get(&e.name) {
                    Some(DoneFile::Read { size, .. }) => (*size).min(e.size),
                    Some(DoneFile::Name(_)) => e.size,
                    None => match resume {
                        Some((f, offset, _)) if *f == e.name => (*offset).min(e.size),
                        _ => 0,
                    },
                })
                .sum();
            self.progress.resumed(self.done.len() as u64, read);
        }
        // After what is read: a reader never sees totals without it.
        self.progress
            .listed(entries.len() as u64, entries.iter().map(|e| e.size).sum());
    }
}
