//! Standard output: each emitted value on its own line.

use std::io::Write;
use std::sync::Arc;

use super::dead_letter::DeadLetters;
use super::{End, RestoredSink, Sink, SinkFactory, SinkSnapshot};
use crate::batch::Batch;
use crate::{Error, Result};

/// Makes [`StdoutSink`]s; nothing to settle on start.
#[derive(Debug)]
pub struct StdoutFactory;

impl SinkFactory for StdoutFactory {
    fn validate(&self) -> Result<()> {
        Ok(())
    }
    fn recover(&self, _: Option<&[Option<RestoredSink>]>, _: &Arc<DeadLetters>) -> Result<()> {
        Ok(())
    }
    fn create(
        &self,
        _: usize,
        _: Option<&RestoredSink>,
        _: &Arc<DeadLetters>,
    ) -> Result<Box<dyn Sink>> {
        Ok(Box::new(StdoutSink))
    }
}

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

    fn pre_commit(&mut self, _: u64) -> Result<Option<SinkSnapshot>> {
        self.flush().map(|()| None)
    }

    fn commit(&mut self, _: u64) -> Result<()> {
        Ok(())
    }

    fn abort(&mut self, _: u64) -> Result<()> {
        Ok(())
    }

    fn end(&mut self, _: End) -> Result<()> {
        self.flush()
    }
}
