//! Peak memory of decoding a v2 JSON body of 8 MiB, measured with a counting allocator (this file
//! is its own test binary, with one test, so nothing else allocates meanwhile). The decoder reads
//! tensor data straight from the body's text into columns, checking each shape against the row
//! limit first, so the peak stays within 3 times the body, the body included. A `serde_json::Value`
//! tree of the same body, which the decoder once built, is measured beside it for comparison.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use xgserve::bundle::Model;
use xgserve::input::{decode_v2, Limits};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BODY: usize = 8 * 1024 * 1024;

/// Peak bytes allocated while `f` runs, above what was allocated before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (PEAK.load(Ordering::Relaxed) - before, out)
}

/// A v2 request whose `inputs` are the model's columns, `rows` rows each (`text` for the strings),
/// then tensors the model does not use, of small numbers, up to `BODY` bytes.
fn body(model: &Model, rows: usize, text: &str) -> String {
    let mut tensors = Vec::new();
    for input in model.preprocessor.inputs() {
        let (datatype, value) = match input.kind {
            xgserve::preprocess::ColumnKind::String => ("BYTES", format!("{text:?}")),
            xgserve::preprocess::ColumnKind::Number => ("FP64", "1".to_owned()),
        };
        let data = vec![value; rows].join(",");
        tensors.push(format!(
            r#"{{"name":"{}","datatype":"{datatype}","shape":[{rows}],"data":[{data}]}}"#,
            input.name
        ));
    }
    let mut body = format!(r#"{{"inputs":[{}"#, tensors.join(","));
    let mut filler = 0;
    while body.len() + 100 < BODY {
        let values = ((BODY - body.len() - 100) / 2).min(100_000);
        body.push_str(&format!(
            r#",{{"name":"unused{filler}","datatype":"FP64","shape":[{values}],"data":[{}]}}"#,
            vec!["1"; values].join(",")
        ));
        filler += 1;
    }
    body.push_str("]}");
    body
}

#[test]
fn an_8_mib_v2_body_decodes_within_three_times_its_size() {
    let model = Model::load(common::shipped_bundle()).unwrap();
    let inputs = model.preprocessor.inputs();
    let limits = Limits { max_rows: 10_000 };
    // Small numbers and one-letter strings (the most values per byte), then long strings (the most
    // bytes a decoded value keeps), each at the row limit.
    for (what, text) in [("small values", "a"), ("long strings", &"a".repeat(200)[..])] {
        let body = body(&model, limits.max_rows, text);
        assert!(body.len() <= BODY && body.len() > BODY - 1024, "{}", body.len());
        let (decoding, request) = peak_of(|| decode_v2(body.as_bytes(), None, inputs, limits));
        let request = request.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(request.batch.rows(), limits.max_rows);
        drop(request);
        let (tree, value) = peak_of(|| serde_json::from_str::<serde_json::Value>(&body).unwrap());
        drop(value);
        let ratio = (body.len() + decoding) as f64 / body.len() as f64;
        println!(
            "{what}: body {} bytes; peak while decoding {decoding} bytes, {ratio:.2} times the body with the body; \
             a serde_json::Value tree of it: {tree} bytes, {:.1} times",
            body.len(),
            (body.len() + tree) as f64 / body.len() as f64
        );
        assert!(ratio <= 3.0, "{what}: {ratio:.2} times the body");
    }
}
