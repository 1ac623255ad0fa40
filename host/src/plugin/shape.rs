//! The shape of an operator's state: the identity a snapshot records
//! (`wit/STATE.md`, envelope format 2) and the rule by which one plugin may
//! take over state another wrote.
//!
//! A swap and a restore into another plugin version compare the shape of
//! the state they carry with the shape of the new plugin's state. Equal
//! names (or a side that records none: an envelope of format 1, or a blob
//! that is no envelope) leave the decision to the state versions, as
//! before shapes existed; different names are refused unless the new
//! plugin declares that it migrates from the old shape and version. The
//! host learns what a plugin declares from the snapshot of a fresh
//! instance (created and initialized, no state): the SDKs write the shape
//! and the migrations into every snapshot's header.

use weir_envelope::Envelope;

use super::operator::OperatorFactory;
use crate::Result;

/// What a snapshot says about its state's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateShape {
    /// The shape's name; `None` when the writer recorded none (an
    /// envelope of format 1, or a blob that is not an envelope).
    pub name: Option<String>,
    /// The state schema version the snapshot was written with.
    pub version: u32,
    /// The shapes (name, state version) the writer declared its restore
    /// takes over.
    pub migrates_from: Vec<(String, u32)>,
}

/// How a plugin may take over state of another shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// The same shape, or an unknown one: the state versions decide
    /// (`accepts` must list the old version).
    ByVersion,
    /// Another shape that the new plugin declares it migrates from.
    Migration,
}

impl StateShape {
    /// The shape `blob` records (written with state version `version`).
    pub fn of_blob(blob: &[u8], version: u32) -> Self {
        match Envelope::parse(blob) {
            Ok(env) => Self {
                name: env.shape.map(str::to_string),
                version,
                migrates_from: env
                    .migrates_from
                    .iter()
                    .map(|(n, v)| (n.to_string(), *v))
                    .collect(),
            },
            Err(_) => Self {
                name: None,
                version,
                migrates_from: Vec::new(),
            },
        }
    }

    /// The shape `factory`'s plugin declares: the header of a fresh
    /// instance's snapshot (created for `partition` and initialized).
    pub fn of_plugin(factory: &dyn OperatorFactory, partition: usize) -> Result<Self> {
        let mut op = factory.create(partition)?;
        factory.init(op.as_mut())?;
        let version = op.state_version()?;
        let blob = op.snapshot()?;
        Ok(Self::of_blob(&blob, version))
    }

    /// `` `name` (version N) ``, for messages.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("`{name}` (version {})", self.version),
            None => format!("of an unrecorded shape (version {})", self.version),
        }
    }

    /// Whether a plugin whose state has this shape may take over state of
    /// shape `old`; the error says why not, naming both shapes.
    pub fn takes_over(&self, old: &StateShape) -> std::result::Result<Takeover, String> {
        let (Some(old_name), Some(new_name)) = (&old.name, &self.name) else {
            return Ok(Takeover::ByVersion);
        };
        if old_name == new_name {
            return Ok(Takeover::ByVersion);
        }
        if self
            .migrates_from
            .iter()
            .any(|(n, v)| n == old_name && *v == old.version)
        {
            return Ok(Takeover::Migration);
        }
        Err(format!(
            "the state has shape {}; the new plugin's state has shape {}, and it does not \
             declare a migration from `{old_name}` version {}",
            old.describe(),
            self.describe(),
            old.version
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_envelope::{Shape, Writer};

    fn blob(name: &str, version: u32, migrates_from: &[(&str, u32)]) -> Vec<u8> {
        let shape = Shape {
            name,
            migrates_from,
        };
        Writer::new(version, &shape, b"", 0).finish()
    }

    #[test]
    fn another_shape_is_taken_over_only_through_a_declared_migration() {
        let machine = StateShape::of_blob(&blob("weir.state-machine", 1, &[]), 1);
        let unit = StateShape::of_blob(&blob("()", 1, &[]), 1);
        assert_eq!(
            unit.takes_over(&machine),
            Err(
                "the state has shape `weir.state-machine` (version 1); the new plugin's state \
                 has shape `()` (version 1), and it does not declare a migration from \
                 `weir.state-machine` version 1"
                    .into()
            )
        );
        let drops = StateShape::of_blob(&blob("()", 1, &[("weir.state-machine", 1)]), 1);
        assert_eq!(drops.takes_over(&machine), Ok(Takeover::Migration));
        let other_version = StateShape {
            version: 2,
            ..machine.clone()
        };
        assert!(drops.takes_over(&other_version).is_err(), "declared for 1");
        assert_eq!(machine.takes_over(&machine), Ok(Takeover::ByVersion));
    }

    #[test]
    fn an_unrecorded_shape_leaves_it_to_the_versions() {
        let mut old = b"WEIR\x01".to_vec();
        old.extend_from_slice(&1u32.to_le_bytes());
        old.extend_from_slice(&0u32.to_le_bytes());
        old.extend_from_slice(&0u64.to_le_bytes());
        let old = StateShape::of_blob(&old, 1);
        assert_eq!(old.name, None);
        assert_eq!(old.describe(), "of an unrecorded shape (version 1)");
        let unit = StateShape::of_blob(&blob("()", 1, &[]), 1);
        assert_eq!(unit.takes_over(&old), Ok(Takeover::ByVersion));
        assert_eq!(
            old.takes_over(&StateShape::of_blob(b"not an envelope", 1)),
            Ok(Takeover::ByVersion)
        );
    }
}
