//! The same operator logic compiled natively, behind the host's
//! [`Operator`] trait, so the benchmark runs it through the same harness as
//! the Wasm plugin (same source, router, tasks and sink; no Wasm boundary).

use std::marker::PhantomData;

use weir::batch::{Batch, Outcome, Rejection, Timer};
use weir::plugin::{Operator, OperatorFactory};
use weir::{Error, Result};
use weir_guest::runtime::{self, BatchView, Runtime};

/// A natively compiled operator.
pub struct NativeOperator<O: weir_guest::Operator> {
    name: String,
    runtime: Runtime<O>,
}

fn fail(name: &str, e: runtime::Error) -> Error {
    Error::Plugin {
        plugin: name.into(),
        task: 0,
        call: "native".into(),
        detail: format!("{e:?}"),
    }
}

fn outcome(o: runtime::Outcome) -> Outcome {
    Outcome {
        emitted: Batch {
            keys: o.emitted.keys,
            key_ends: o.emitted.key_ends,
            values: o.emitted.values,
            value_ends: o.emitted.value_ends,
            timestamps: o.emitted.timestamps,
        },
        timers: o
            .timers
            .into_iter()
            .map(|(key, time)| Timer { key, time })
            .collect(),
        rejected: o
            .rejected
            .into_iter()
            .map(|(index, reason)| Rejection { index, reason })
            .collect(),
    }
}

impl<O: weir_guest::Operator + Send> Operator for NativeOperator<O>
where
    O::State: Send,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn process(&mut self, batch: &Batch, watermark: i64) -> Result<Outcome> {
        let view = BatchView {
            keys: &batch.keys,
            key_ends: &batch.key_ends,
            values: &batch.values,
            value_ends: &batch.value_ends,
            timestamps: &batch.timestamps,
        };
        self.runtime
            .process(view, watermark)
            .map(outcome)
            .map_err(|e| fail(&self.name, e))
    }
    fn on_timers(&mut self, fired: &[Timer], watermark: i64) -> Result<Outcome> {
        self.runtime
            .on_timers(fired.iter().map(|t| (&t.key[..], t.time)), watermark)
            .map(outcome)
            .map_err(|e| fail(&self.name, e))
    }
    fn snapshot(&mut self) -> Result<Vec<u8>> {
        self.runtime.snapshot().map_err(|e| fail(&self.name, e))
    }
    fn snapshot_begin(&mut self) -> Result<bool> {
        self.runtime
            .snapshot_begin()
            .map(|()| true)
            .map_err(|e| fail(&self.name, e))
    }
    fn snapshot_next(&mut self, max_bytes: u32) -> Result<Option<Vec<u8>>> {
        self.runtime
            .snapshot_next(max_bytes as usize)
            .map_err(|e| fail(&self.name, e))
    }
    fn restore(&mut self, bytes: &[u8], from_version: u32) -> Result<()> {
        self.runtime
            .restore(bytes, from_version)
            .map_err(|e| fail(&self.name, e))
    }
    fn init_with(&mut self, config: &[(String, String)]) -> Result<()> {
        self.runtime
            .init(&weir_guest::Config::new(config.to_vec()))
            .map_err(|e| fail(&self.name, e))
    }
    fn digest(&self) -> &str {
        "native"
    }
    fn state_version(&mut self) -> Result<u32> {
        Ok(O::STATE_VERSION)
    }
    fn accepted_versions(&mut self) -> Result<Vec<u32>> {
        Ok(runtime::accepted_versions::<O>())
    }
}

/// Makes [`NativeOperator`]s.
pub struct NativeFactory<O> {
    name: String,
    _op: PhantomData<fn() -> O>,
}

impl<O> NativeFactory<O> {
    /// A factory naming its operators `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            _op: PhantomData,
        }
    }
}

impl<O: weir_guest::Operator + Send> OperatorFactory for NativeFactory<O>
where
    O::State: Send,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn create(&self, _task: usize) -> Result<Box<dyn Operator>> {
        Ok(Box::new(NativeOperator::<O> {
            name: self.name.clone(),
            runtime: Runtime::new(),
        }))
    }
    fn init(&self, op: &mut dyn Operator) -> Result<()> {
        op.init_with(&[])
    }
}
