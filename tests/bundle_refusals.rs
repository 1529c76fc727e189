//! Every way a bundle is refused at load names the file and the reason.

mod common;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use xgserve::bundle::{hex, BundleError, Model};

/// Replaces a file and records its new digest, so only the intended check can fail.
fn rewrite(dir: &Path, file: &str, bytes: &[u8]) {
    std::fs::write(dir.join(file), bytes).unwrap();
    let manifest_path = dir.join("bundle.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["files"][file] = hex(&Sha256::digest(bytes)).into();
    std::fs::write(manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

fn edit_json(dir: &Path, file: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
    edit(&mut value);
    rewrite(dir, file, &serde_json::to_vec(&value).unwrap());
}

fn refusal(dir: &Path) -> BundleError {
    match Model::load(dir) {
        Ok(_) => panic!("{} loaded but must be refused", dir.display()),
        Err(error) => error,
    }
}

fn assert_refused(dir: &Path, file: &str, reason: &str) {
    let error = refusal(dir);
    let message = error.to_string();
    assert_eq!(error.path, dir.join(file), "{message}");
    assert!(message.starts_with(&dir.join(file).display().to_string()), "{message}");
    assert!(message.contains(reason), "{message:?} should say {reason:?}");
}

fn fixture(version: &str, name: &str) -> PathBuf {
    common::repo().join("tests/fixtures/xgboost").join(version).join(name)
}

#[test]
fn the_shipped_bundle_loads_and_proves_its_parity() {
    let model = Model::load(common::shipped_bundle()).unwrap();
    assert_eq!(model.manifest.name, "ford_used_car_price");
    assert_eq!(model.forest.num_features(), 12);
    assert_eq!(
        model.parity,
        (298, 2),
        "parity cases predicted and refused as Python did"
    );
}

#[test]
fn missing_file() {
    let dir = common::shipped_bundle_copy();
    std::fs::remove_file(dir.path().join("model.json")).unwrap();
    assert_refused(dir.path(), "model.json", "cannot read");
}

#[test]
fn missing_bundle_json() {
    let dir = common::shipped_bundle_copy();
    std::fs::remove_file(dir.path().join("bundle.json")).unwrap();
    assert_refused(dir.path(), "bundle.json", "cannot read");
}

#[test]
fn digest_mismatch() {
    let dir = common::shipped_bundle_copy();
    let path = dir.path().join("preprocess.json");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b" ");
    std::fs::write(&path, bytes).unwrap();
    assert_refused(dir.path(), "preprocess.json", "digest mismatch");
}

#[test]
fn bad_json_in_each_file() {
    for (file, reason) in [
        ("model.json", "not a valid XGBoost JSON model"),
        ("preprocess.json", "not a valid preprocessing spec"),
        ("parity.json", "not a valid parity file"),
    ] {
        let dir = common::shipped_bundle_copy();
        rewrite(dir.path(), file, b"{\"truncated\": [1, 2");
        assert_refused(dir.path(), file, reason);
    }
    let dir = common::shipped_bundle_copy();
    std::fs::write(dir.path().join("bundle.json"), b"not json").unwrap();
    assert_refused(dir.path(), "bundle.json", "not a valid bundle manifest");
}

#[test]
fn unsupported_booster() {
    let dir = common::shipped_bundle_copy();
    rewrite(
        dir.path(),
        "model.json",
        &std::fs::read(fixture("2.1.4", "refuse-dart.json")).unwrap(),
    );
    assert_refused(dir.path(), "model.json", "only gbtree is supported");
}

#[test]
fn unsupported_objective() {
    let dir = common::shipped_bundle_copy();
    edit_json(dir.path(), "model.json", |m| {
        m["learner"]["objective"]["name"] = "rank:pairwise".into()
    });
    assert_refused(
        dir.path(),
        "model.json",
        "unsupported model: objective \"rank:pairwise\"",
    );
}

#[test]
fn width_mismatch() {
    let dir = common::shipped_bundle_copy();
    rewrite(
        dir.path(),
        "model.json",
        &std::fs::read(fixture("1.6.2", "reg-squarederror.json")).unwrap(),
    );
    assert_refused(
        dir.path(),
        "model.json",
        "the booster expects 5 features but preprocess.json writes 12",
    );
}

#[test]
fn inconsistent_spec() {
    let dir = common::shipped_bundle_copy();
    edit_json(dir.path(), "preprocess.json", |spec| spec["num_features"] = 13.into());
    assert_refused(
        dir.path(),
        "preprocess.json",
        "the blocks write 12 features, num_features says 13",
    );
    let dir = common::shipped_bundle_copy();
    edit_json(dir.path(), "preprocess.json", |spec| {
        spec["blocks"][0]["steps"][1]["op"] = "sqrt".into()
    });
    assert_refused(dir.path(), "preprocess.json", "unknown variant `sqrt`");
}

#[test]
fn parity_mismatch() {
    let dir = common::shipped_bundle_copy();
    edit_json(dir.path(), "parity.json", |parity| {
        let first = parity["predictions"][0].as_f64().unwrap();
        parity["predictions"][0] = (first + 1.0).into();
    });
    assert_refused(dir.path(), "parity.json", "row 0: the engine predicts");
}

#[test]
fn a_file_outside_the_bundle_is_refused() {
    let dir = common::shipped_bundle_copy();
    edit_json(dir.path(), "bundle.json", |m| m["files"]["../secret"] = "00".into());
    assert_refused(dir.path(), "bundle.json", "must be a plain name");
}
