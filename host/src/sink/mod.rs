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
    /// Make everything written so far durable / visible.
    fn flush(&mut self) -> Result<()>;
}

/// Open the sink of `spec` for one task.
pub fn open(spec: &SinkSpec, task: usize) -> Result<Box<dyn Sink>> {
    Ok(match spec {
        SinkSpec::Stdout => Box::new(stdout::StdoutSink),
        SinkSpec::Files { dir } => Box::new(file::FileSink::create(dir, task)?),
    })
}
