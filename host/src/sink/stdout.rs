//! Standard output: each emitted value on its own line.

use std::io::Write;

use super::Sink;
use crate::batch::Batch;
use crate::{Error, Result};

/// Writes values as lines to standard output (one lock per batch).
#[derive(Debug)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn write(&mut self, batch: &Batch) -> Result<()> {
        let mut out = std::io::stdout().lock();
        for r in batch.iter() {
            out.write_all(r.value)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(Error::io("writing", "stdout"))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        std::io::stdout()
            .flush()
            .map_err(Error::io("flushing", "stdout"))
    }
}
