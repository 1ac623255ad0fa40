//! Sinks: where emitted records go. The runtime sees only [`Sink`]; each
//! kind lives in its own module. Dead letters have their own output,
//! [`dead_letter::DeadLetters`], shared by the source and all tasks.

pub mod dead_letter;
pub mod file;
pub mod stdout;

use crate::Result;
use crate::batch::Batch;
use crate::config::SinkSpec;

/// A task's writer of emitted records.
pub trait Sink: Send {
    /// Write every record of `batch`.
    fn write(&mut self, batch: &Batch) -> Result<()>;
    /// Push buffered output out (and, without checkpoints, commit it).
    fn flush(&mut self) -> Result<()>;
    /// At a barrier: close the current output so the checkpoint can commit
    /// it. `None` for sinks without transactions.
    fn prepare_commit(&mut self) -> Result<Option<crate::checkpoint::manifest::SinkState>> {
        self.flush().map(|()| None)
    }
    /// The task is ending: close the current output (not committed).
    fn end(&mut self) -> Result<()> {
        self.flush()
    }
}

/// Open the sink of `spec` for one task. `next_seq` is the task's next part
/// file number (from a restored checkpoint, else 0); `exactly_once` makes
/// file output wait for checkpoints to commit.
pub fn open(
    spec: &SinkSpec,
    task: usize,
    next_seq: u64,
    exactly_once: bool,
) -> Result<Box<dyn Sink>> {
    Ok(match spec {
        SinkSpec::Stdout => Box::new(stdout::StdoutSink),
        SinkSpec::Files { dir } => {
            Box::new(file::FileSink::create(dir, task, next_seq, exactly_once)?)
        }
    })
}
