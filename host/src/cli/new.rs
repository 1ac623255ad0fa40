//! `weir new NAME --lang rust|python|js|c`: a plugin project that builds as
//! written (its `build.sh`) and a job that runs it over a sample input; and
//! `weir component build-c`, the C plugin build in one command.
//!
//! The templates are in `templates/`, one folder per language plus the job
//! file and the sample input they share; `@NAME@`, `@CRATE@` and `@SDK@`
//! (the Weir source tree whose SDKs the project uses) are filled in.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

/// A plugin language `weir new` writes a project for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(super) enum Lang {
    /// Rust, with the `weir-guest` SDK.
    Rust,
    /// Python, with componentize-py.
    Python,
    /// JavaScript, with componentize-js.
    Js,
    /// C, with the header-only SDK and clang.
    C,
}

/// The files of a project: path in the project and template text.
fn templates(lang: Lang) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![
        ("job.toml", include_str!("templates/job.toml")),
        ("events/sample.csv", include_str!("templates/sample.csv")),
    ];
    files.extend(match lang {
        Lang::Rust => [
            ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
            ("src/lib.rs", include_str!("templates/rust/lib.rs")),
            ("build.sh", include_str!("templates/rust/build.sh")),
        ]
        .as_slice(),
        Lang::Python => [
            ("app.py", include_str!("templates/python/app.py")),
            ("build.sh", include_str!("templates/python/build.sh")),
        ]
        .as_slice(),
        Lang::Js => [
            ("operator.js", include_str!("templates/js/operator.js")),
            ("build.sh", include_str!("templates/js/build.sh")),
        ]
        .as_slice(),
        Lang::C => [
            ("operator.c", include_str!("templates/c/operator.c")),
            ("build.sh", include_str!("templates/c/build.sh")),
        ]
        .as_slice(),
    });
    files
}

/// The Weir source tree whose SDKs a project uses: `sdk` when given, else
/// the tree this `weir` was built from (`cargo install --path host`).
fn sdk_root(sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (dir, given) = match sdk {
        Some(d) => (d.to_path_buf(), true),
        None => (Path::new(env!("CARGO_MANIFEST_DIR")).join(".."), false),
    };
    let ok = dir.join("guest-sdk/Cargo.toml").is_file() && dir.join("wit/v0.1.0").is_dir();
    if !ok {
        if given {
            bail!(
                "{} is not a Weir source tree (no guest-sdk/Cargo.toml and wit/v0.1.0 there)",
                dir.display()
            );
        }
        bail!(
            "the Weir source tree this weir was built from ({}) is gone: pass --sdk DIR, a \
             clone of the Weir repository (its SDKs and WIT files)",
            dir.display()
        );
    }
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// Check a project name: it names a folder, a crate and a component file.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    ensure!(
        ok,
        "`{}` is not a plugin name: use lowercase letters, digits, `-` and `_`, starting with \
         a letter (it names the folder, the crate and the component)",
        name.escape_debug()
    );
    Ok(())
}

/// `weir new`: write the project `NAME` for `lang` into `dir` (default
/// `./NAME`), refusing a folder that exists and is not empty.
pub(super) fn new_project(
    name: &str,
    lang: Lang,
    dir: Option<&Path>,
    sdk: Option<&Path>,
) -> anyhow::Result<()> {
    check_name(name)?;
    let sdk = sdk_root(sdk)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    if let Ok(mut entries) = std::fs::read_dir(&dir) {
        ensure!(
            entries.next().is_none(),
            "{} exists and is not empty: nothing written (choose another NAME or --dir)",
            dir.display()
        );
    }
    let sdk_text = sdk.to_string_lossy();
    ensure!(
        !sdk_text.contains(['"', '\\', '$', '`', '\n']),
        "the Weir source tree's path {sdk_text:?} holds characters the build files cannot quote"
    );
    let crate_name = name.replace('-', "_");
    for (path, text) in templates(lang) {
        let text = text
            .replace("@NAME@", name)
            .replace("@CRATE@", &crate_name)
            .replace("@SDK@", &sdk_text);
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    set_executable(&dir.join("build.sh"))?;
    if lang == Lang::Rust {
        // The versions the SDK is tested with, not whatever is newest.
        let lock = sdk.join("Cargo.lock");
        if lock.is_file() {
            std::fs::copy(&lock, dir.join("Cargo.lock"))
                .with_context(|| format!("copying {}", lock.display()))?;
        }
    }
    println!(
        "wrote {lang:?} plugin `{name}` to {dir}; build it and run its job:\n  \
         {dir}/build.sh && weir run {dir}/job.toml",
        dir = dir.display()
    );
    Ok(())
}

fn set_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// `weir component build-c`: C sources (with `weir.h` from the SDK) into
/// a plugin component: bindings of `weir:plugin@0.1.0`, clang for
/// `wasm32-wasi` as a reactor, then a component (WASI only if the code
/// uses stdio).
pub(super) fn build_c(sources: &[PathBuf], sdk: Option<&Path>, out: &Path) -> anyhow::Result<()> {
    ensure!(!sources.is_empty(), "no C source given");
    let sdk = sdk_root(sdk)?;
    let work = std::env::temp_dir().join(format!("weir-build-c-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = (|| {
        weir_build_support::generate_c_bindings(&sdk, &work)
            .map_err(|e| anyhow::anyhow!("generating the C bindings: {e}"))?;
        let module = work.join("module.wasm");
        let clang = std::env::var("WEIR_CLANG").unwrap_or_else(|_| "clang".into());
        let status = Command::new(&clang)
            .args([
                "--target=wasm32-wasi",
                "--sysroot=/usr",
                "-mexec-model=reactor",
                "-O2",
                "-Wall",
            ])
            .arg("-I")
            .arg(&work)
            .arg("-I")
            .arg(sdk.join("guest-sdk/c"))
            .args(sources)
            .arg(work.join("operator_plugin.c"))
            .arg(work.join("operator_plugin_component_type.o"))
            .arg("-o")
            .arg(&module)
            .status()
            .with_context(|| {
                format!(
                    "cannot run {clang} (install clang, lld, wasi-libc and \
                     libclang-rt-14-dev-wasm32, or set WEIR_CLANG)"
                )
            })?;
        ensure!(status.success(), "{clang} failed ({status})");
        super::tools::new_component(&module, out, false)
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_folder_and_crate_names() {
        for bad in ["", "A", "1x", "a b", "../x", "a/b", "x.y", "é"] {
            assert!(check_name(bad).is_err(), "{bad:?} refused");
        }
        for good in ["counter", "my-op", "op_2"] {
            assert!(check_name(good).is_ok(), "{good:?} accepted");
        }
    }

    #[test]
    fn every_template_placeholder_is_filled() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js, Lang::C] {
            for (path, text) in templates(lang) {
                let filled = text
                    .replace("@NAME@", "n")
                    .replace("@CRATE@", "n")
                    .replace("@SDK@", "/s");
                assert!(!filled.contains('@'), "{lang:?} {path}: {filled}");
            }
        }
    }
}
