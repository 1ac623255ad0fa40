//! # weir-guest: write Weir operators in Rust
//!
//! An operator is a serde type that implements [`Operator`]; one macro,
//! [`export_operator!`], turns the crate into a Weir plugin. The SDK owns the
//! per-key state map, the packed batch format of the WIT contract, timers,
//! rejections and snapshot/restore, so an author writes none of that and needs
//! no knowledge of the canonical ABI.
//!
//! ```ignore
//! use serde::{Deserialize, Serialize};
//! use weir_guest::{Ctx, KeyState, Operator, Record};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter;
//!
//! impl Operator for Counter {
//!     type State = u64;
//!     fn on_event(&mut self, rec: &Record<'_>, state: &mut KeyState<'_, u64>, ctx: &mut Ctx<'_>)
//!         -> Result<(), String> {
//!         let n = state.get().copied().unwrap_or(0) + 1;
//!         state.set(n);
//!         ctx.emit(rec.key, n.to_string().as_bytes(), rec.timestamp);
//!         Ok(())
//!     }
//! }
//! weir_guest::export_operator!(Counter);
//! ```
//!
//! # Layout
//! - [`Operator`], [`Ctx`], [`KeyState`], [`Record`]: what an author sees.
//! - [`runtime`]: the generic driver behind the exports; also usable natively
//!   (benchmarks run the same operator logic without Wasm through it).
//! - [`map`]: the keyed state map, with copy-on-write chunked snapshots.
//! - [`envelope`]: the language-neutral keyed state encoding (`wit/STATE.md`).
//! - [`bindings`]: the `wit-bindgen` output for `wit/weir.wit`.

pub use weir_envelope as envelope;
pub mod map;
pub mod runtime;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "operator-plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_operator_plugin",
        default_bindings_module: "weir_guest::bindings",
    });
}

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use runtime::Runtime;

/// Event time of a record without a timestamp.
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// The configuration table of the job file, as given to [`Operator::init`].
#[derive(Debug, Default, Clone)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Build a config from key/value pairs.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Self { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` parsed, `default` when unset, an error naming the
    /// key when it does not parse.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| format!("config `{key}` = {v:?}: {e}")),
        }
    }

    /// All entries.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

/// One input record, borrowed from the batch (no copy).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The record's key bytes (what the host partitioned by).
    pub key: &'a [u8],
    /// The record's value bytes (for file sources: the whole line).
    pub value: &'a [u8],
    /// Event time in milliseconds, if the source has one.
    pub timestamp: Option<i64>,
}

/// The state of the current key. Empty for a key seen for the first time or
/// after [`KeyState::clear`]; an empty key takes no space in snapshots.
pub struct KeyState<'a, S> {
    slot: &'a mut Option<S>,
}

impl<'a, S> KeyState<'a, S> {
    /// Wrap a slot of the state map.
    pub fn new(slot: &'a mut Option<S>) -> Self {
        Self { slot }
    }

    /// The current value, if any.
    pub fn get(&self) -> Option<&S> {
        self.slot.as_ref()
    }

    /// The current value for update in place, if any.
    pub fn get_mut(&mut self) -> Option<&mut S> {
        self.slot.as_mut()
    }

    /// Replace the value.
    pub fn set(&mut self, value: S) {
        *self.slot = Some(value);
    }

    /// Forget the key.
    pub fn clear(&mut self) {
        *self.slot = None;
    }

    /// Whether the key has no value.
    pub fn is_empty(&self) -> bool {
        self.slot.is_none()
    }
}

/// Where an operator sends what it produces for the current call.
pub struct Ctx<'a> {
    out: &'a mut runtime::OutputBuf,
    key: &'a [u8],
    watermark: i64,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(out: &'a mut runtime::OutputBuf, key: &'a [u8], watermark: i64) -> Self {
        Self {
            out,
            key,
            watermark,
        }
    }

    /// Emit a record downstream.
    pub fn emit(&mut self, key: &[u8], value: &[u8], timestamp: Option<i64>) {
        self.out.emit(key, value, timestamp.unwrap_or(NO_TIMESTAMP));
    }

    /// Emit a record whose value is written by `write` straight into the
    /// output buffer (no intermediate allocation).
    pub fn emit_with(
        &mut self,
        key: &[u8],
        timestamp: Option<i64>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        self.out
            .emit_with(key, timestamp.unwrap_or(NO_TIMESTAMP), write);
    }

    /// Register an event-time timer for the current key at `time` (ms):
    /// [`Operator::on_timer`] runs once the watermark reaches it.
    pub fn register_timer(&mut self, time: i64) {
        self.out.timers.push((self.key.to_vec(), time));
    }

    /// The current watermark (ms), [`NO_TIMESTAMP`] before the first one.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The key being processed.
    pub fn key(&self) -> &[u8] {
        self.key
    }
}

/// A stream operator with per-key state.
///
/// The operator value itself is operator-wide state (serialized into
/// snapshots; mark configuration fields `#[serde(skip)]`). On a restore the
/// host calls `restore` before `init`, so `init` always sees the job's
/// current configuration.
pub trait Operator: Serialize + DeserializeOwned + Default + 'static {
    /// Per-key state.
    type State: Serialize + DeserializeOwned;

    /// The state schema version snapshots are written with.
    const STATE_VERSION: u32 = 1;

    /// Older state versions [`Operator::migrate_state`] can read.
    const MIGRATES_FROM: &'static [u32] = &[];

    /// The name of the state's shape, recorded in every snapshot
    /// (`wit/STATE.md`). Empty (the default): the name of
    /// [`Operator::State`] as `std::any::type_name` spells it, which may
    /// change with the crate's or the type's path, or the compiler; declare
    /// a name when the state is meant to move between versions or
    /// languages. The host refuses to swap or restore state of one shape
    /// into an operator of another unless the new one lists the old shape
    /// in [`Operator::SHAPE_MIGRATES_FROM`].
    const STATE_SHAPE: &'static str = "";

    /// Shapes of other operators' state, as (shape name, state version),
    /// that [`Operator::migrate_shape`] takes over.
    const SHAPE_MIGRATES_FROM: &'static [(&'static str, u32)] = &[];

    /// Apply the job's configuration.
    fn init(&mut self, _config: &Config) -> Result<(), String> {
        Ok(())
    }

    /// Handle one record. Return `Err(reason)` to reject the record: it goes
    /// to the dead-letter output with the reason, and the job goes on.
    fn on_event(
        &mut self,
        record: &Record<'_>,
        state: &mut KeyState<'_, Self::State>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), String>;

    /// A timer registered for `key` at `time` fired.
    fn on_timer(
        &mut self,
        _key: &[u8],
        _time: i64,
        _state: &mut KeyState<'_, Self::State>,
        _ctx: &mut Ctx<'_>,
    ) {
    }

    /// Read one key's value written by state version `from_version` (one of
    /// [`Operator::MIGRATES_FROM`]).
    fn migrate_state(from_version: u32, _bytes: &[u8]) -> Result<Self::State, String> {
        Err(format!("no migration from state version {from_version}"))
    }

    /// Read one key's value written by an operator whose state has another
    /// shape (`shape`, state version `version`; one of
    /// [`Operator::SHAPE_MIGRATES_FROM`]). `None` drops the key.
    fn migrate_shape(
        shape: &str,
        version: u32,
        _bytes: &[u8],
    ) -> Result<Option<Self::State>, String> {
        Err(format!(
            "no migration from state shape `{shape}` version {version}"
        ))
    }

    /// Read the operator-wide bytes written by state version `from_version`
    /// (also of another shape, see [`Operator::migrate_shape`]).
    /// The default starts from `Default` when they cannot be read as is.
    fn migrate_operator(from_version: u32, bytes: &[u8]) -> Result<Self, String> {
        Ok(runtime::decode::<Self>(bytes).unwrap_or_else(|_| {
            let _ = from_version;
            Self::default()
        }))
    }
}

/// The name of `O`'s state shape: [`Operator::STATE_SHAPE`], or the state
/// type's name when that is empty.
pub fn state_shape<O: Operator>() -> &'static str {
    if O::STATE_SHAPE.is_empty() {
        std::any::type_name::<O::State>()
    } else {
        O::STATE_SHAPE
    }
}

/// What `O`'s snapshots record about its state's shape.
pub fn shape<O: Operator>() -> envelope::Shape<'static> {
    envelope::Shape {
        name: state_shape::<O>(),
        migrates_from: O::SHAPE_MIGRATES_FROM,
    }
}

/// Log levels for [`log`].
pub use bindings::weir::plugin::types::Level;

/// Write a line to the host's log.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::weir::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (level, message);
    }
}

/// Export `$op` (a type implementing [`Operator`]) as the crate's Weir plugin.
#[macro_export]
macro_rules! export_operator {
    ($op:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirPlugin;

            thread_local! {
                static __RUNTIME: ::core::cell::RefCell<$crate::Runtime<$op>> =
                    ::core::cell::RefCell::new($crate::Runtime::<$op>::new());
            }

            impl $crate::bindings::exports::weir::plugin::operator::Guest for __WeirPlugin {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), $crate::bindings::weir::plugin::types::Error> {
                    __RUNTIME.with(|rt| $crate::runtime::glue::init(&mut rt.borrow_mut(), config))
                }
                fn process(
                    input: $crate::bindings::weir::plugin::types::Batch,
                    watermark: i64,
                ) -> ::core::result::Result<
                    $crate::bindings::weir::plugin::types::Outcome,
                    $crate::bindings::weir::plugin::types::Error,
                > {
                    __RUNTIME.with(|rt| {
                        $crate::runtime::glue::process(&mut rt.borrow_mut(), input, watermark)
                    })
                }
                fn on_timers(
                    fired: ::std::vec::Vec<$crate::bindings::weir::plugin::types::Timer>,
                    watermark: i64,
                ) -> ::core::result::Result<
                    $crate::bindings::weir::plugin::types::Outcome,
                    $crate::bindings::weir::plugin::types::Error,
                > {
                    __RUNTIME.with(|rt| {
                        $crate::runtime::glue::on_timers(&mut rt.borrow_mut(), fired, watermark)
                    })
                }
            }

            impl $crate::bindings::exports::weir::plugin::state::Guest for __WeirPlugin {
                fn version() -> u32 {
                    <$op as $crate::Operator>::STATE_VERSION
                }
                fn accepts() -> ::std::vec::Vec<u32> {
                    $crate::runtime::accepted_versions::<$op>()
                }
                fn snapshot() -> ::core::result::Result<
                    ::std::vec::Vec<u8>,
                    $crate::bindings::weir::plugin::types::Error,
                > {
                    __RUNTIME.with(|rt| $crate::runtime::glue::snapshot(&rt.borrow()))
                }
                fn restore(
                    bytes: ::std::vec::Vec<u8>,
                    from_version: u32,
                ) -> ::core::result::Result<(), $crate::bindings::weir::plugin::types::Error> {
                    __RUNTIME.with(|rt| {
                        $crate::runtime::glue::restore(&mut rt.borrow_mut(), &bytes, from_version)
                    })
                }
                fn snapshot_begin()
                -> ::core::result::Result<(), $crate::bindings::weir::plugin::types::Error> {
                    __RUNTIME.with(|rt| $crate::runtime::glue::snapshot_begin(&mut rt.borrow_mut()))
                }
                fn snapshot_next(
                    max_bytes: u32,
                ) -> ::core::result::Result<
                    ::core::option::Option<::std::vec::Vec<u8>>,
                    $crate::bindings::weir::plugin::types::Error,
                > {
                    __RUNTIME.with(|rt| {
                        $crate::runtime::glue::snapshot_next(&mut rt.borrow_mut(), max_bytes)
                    })
                }
            }

            $crate::bindings::__export_operator_plugin!(__WeirPlugin with_types_in $crate::bindings);
        };
    };
}
