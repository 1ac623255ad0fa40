//! State on the object store: the [`store`] (a thin wrapper over
//! `object_store`), [`manifest`]s (the commit point of a checkpoint or
//! savepoint, format 2, format 1 read), [`restore`] (find and verify one
//! before a job starts from it), `rescale` (split a file job's restore
//! point by key onto another number of partitions), and the names of
//! savepoints. The runtime asks for them (its triggers) and its
//! coordinator writes them.

pub(crate) mod claim;
pub(crate) mod lease;
pub mod manifest;
pub(crate) mod rescale;
pub(crate) mod restore;
pub mod store;

use manifest::checkpoint_name;

/// Default name of a triggered savepoint.
pub fn savepoint_name(id: u64) -> String {
    format!("sp-{}", checkpoint_name(id))
}

/// Prefix of the savepoints the event-time schedule takes.
pub const EVENT_TIME_PREFIX: &str = "et-";

/// Name of the savepoint taken when the watermark reaches `boundary`.
pub fn event_time_savepoint_name(boundary: i64) -> String {
    let t = manifest::format_time(boundary);
    format!("{EVENT_TIME_PREFIX}{}", t.replace([':', '.'], "-"))
}

/// What a savepoint name may hold, as the refusal says it.
pub const SAVEPOINT_NAME_RULE: &str =
    "a savepoint name may hold letters, digits, - _ . (not only dots; at most 200)";

/// Whether `name` may name a savepoint: a folder name in the store on every
/// platform (letters, digits, `-`, `_`, `.`; not only dots; at most 200).
/// Every way to ask for a savepoint checks it: the control endpoint before
/// it asks, the router for triggers from the library API.
pub fn check_savepoint_name(name: &str) -> Result<(), &'static str> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.chars().all(|c| c == '.')
        && name.len() <= 200;
    if ok { Ok(()) } else { Err(SAVEPOINT_NAME_RULE) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savepoint_names_are_folder_names() {
        for good in ["before-fix", "v1.2_final", "a", &"x".repeat(200)] {
            assert!(check_savepoint_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "sp 1", "é", &"x".repeat(201)] {
            assert!(check_savepoint_name(bad).is_err(), "{bad}");
        }
    }
}
