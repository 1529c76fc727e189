//! `xgserve predict` on files of any size, as a data team re-prices a table: a generated CSV of three
//! million Ford rows scored in bounded memory and in file order, on every core and on one, each
//! prediction the Python pipeline's; refused rows stopping the run, or written to `--rejects`
//! while the rest goes on; `--keep-columns`; the progress bar only on a terminal.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::process::xgserve;

/// Rows in the generated file: about 145 MB of CSV, which as one JSON body would be several times
/// that, and as the decoded columns of one batch a few hundred megabytes.
const ROWS: usize = 3_000_000;
/// The most the scoring process may hold at its peak: about 21 MiB idle (the model, its parity
/// check, the runtime), the chunks in flight (a few MiB), and what the allocator keeps of freed
/// chunks per thread. Reading the file whole would take more than the file's size.
const PEAK_RSS_MIB: u64 = 80;

/// The Ford rows' lines, without the header.
fn ford_lines() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(common::ford_csv()).unwrap();
    let mut lines = text.lines().map(str::to_owned);
    let header = lines.next().unwrap();
    (header, lines.collect())
}

/// The pipeline's prediction for every Ford row, from the Python reference.
fn reference_predictions() -> Vec<f32> {
    let path = common::reference().join("ford/ford_predictions.json");
    let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    serde_json::from_value(value["predictions"].clone()).unwrap()
}

/// Runs xgserve to its end with its output in files; returns (success, stderr, peak RSS in KiB),
/// the peak as the kernel counted it for the child (`wait4`'s `ru_maxrss`).
fn xgserve_measured(args: &[&str], dir: &Path) -> (bool, String, u64) {
    let stderr = dir.join("stderr.txt");
    // Reaped by `wait4` below, which also reports what it used.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_xgserve"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: plain POSIX calls on a child of this process; `usage` is written by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, std::fs::read_to_string(stderr).unwrap(), usage.ru_maxrss as u64)
}

#[test]
fn three_million_rows_are_scored_in_bounded_memory_in_file_order_as_the_pipeline_scores_them() {
    let dir = tempfile::tempdir().unwrap();
    let (header, lines) = ford_lines();
    let input = dir.path().join("cars.csv");
    let mut file = BufWriter::new(File::create(&input).unwrap());
    writeln!(file, "{header}").unwrap();
    for i in 0..ROWS {
        writeln!(file, "{}", lines[i % lines.len()]).unwrap();
    }
    file.into_inner().unwrap().sync_all().unwrap();
    let size_mib = std::fs::metadata(&input).unwrap().len() >> 20;
    assert!(
        size_mib > PEAK_RSS_MIB,
        "the file ({size_mib} MiB) is larger than the bound"
    );

    let every_core = dir.path().join("every-core.csv");
    let (ok, stderr, peak_kib) = xgserve_measured(
        &[
            "predict",
            "--input",
            input.to_str().unwrap(),
            "--output",
            every_core.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.is_empty(),
        "no progress bar when standard error is not a terminal: {stderr}"
    );
    eprintln!(
        "{ROWS} rows ({size_mib} MiB of CSV) on every core: peak RSS {} MiB",
        peak_kib >> 10
    );
    assert!(peak_kib >> 10 <= PEAK_RSS_MIB, "peak RSS {} MiB", peak_kib >> 10);

    let expected = reference_predictions();
    assert_eq!(expected.len(), lines.len());
    let written = BufReader::new(File::open(&every_core).unwrap());
    let mut rows = written.lines().map(Result::unwrap);
    assert_eq!(rows.next().unwrap(), "prediction");
    let mut count = 0;
    for (i, line) in rows.enumerate() {
        let ours: f32 = line.parse().unwrap();
        let want = expected[i % expected.len()];
        assert_eq!(
            ours.to_bits(),
            want.to_bits(),
            "row {i}: {ours} against the pipeline's {want}"
        );
        count += 1;
    }
    assert_eq!(count, ROWS, "one prediction per row");

    let one_thread = dir.path().join("one-thread.csv");
    let (ok, stderr, _) = xgserve_measured(
        &[
            "predict",
            "--threads",
            "1",
            "--input",
            input.to_str().unwrap(),
            "--output",
            one_thread.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(ok, "{stderr}");
    assert!(
        std::fs::read(&one_thread).unwrap() == std::fs::read(&every_core).unwrap(),
        "one thread writes what every core writes"
    );
}

/// Five cars: two the model refuses (a word for a mileage; a mileage of -1, whose log is minus
/// infinity), one line with a field too many, and two good ones.
const WITH_BAD_ROWS: &str = "model,year,transmission,mileage,fuelType,tax,mpg,engineSize\n\
     C-MAX,2014,Semi-Auto,40000,Diesel,160,50.4,2.0\n\
     Focus,2016,Manual,lots,Petrol,30,55.4,1.0\n\
     Mondeo,2018,Manual,-1,Petrol,145,39.7,2.5\n\
     Fiesta,2017,Manual,1000,Petrol,145,39.7,2.5,extra\n\
     EcoSport,2019,Automatic,1400,Petrol,150,44.1,1.0\n";

#[test]
fn a_refused_row_stops_the_run_with_its_row_and_column_or_goes_to_the_rejects_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cars.csv");
    std::fs::write(&input, WITH_BAD_ROWS).unwrap();
    let output = dir.path().join("out.csv");
    let (input, output_arg) = (input.to_str().unwrap(), output.to_str().unwrap());

    let (ok, _, stderr) = xgserve(&["predict", "--input", input, "--output", output_arg]);
    assert!(!ok, "a refused row fails the run");
    assert!(
        stderr.contains("cars.csv") && stderr.contains("column \"mileage\", row 1"),
        "{stderr}"
    );
    assert!(stderr.contains("--rejects"), "the error says how to go on: {stderr}");
    assert!(!output.exists(), "no half-written output is left");

    let rejects = dir.path().join("rejects.csv");
    let (ok, _, stderr) = xgserve(&[
        "predict",
        "--input",
        input,
        "--output",
        output_arg,
        "--rejects",
        rejects.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    // The good rows, priced as the Bento example prices the same two cars.
    let expected: Vec<f32> = serde_json::from_str(include_str!("fixtures/bento_example.response").trim()).unwrap();
    let written: Vec<f32> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(written, expected);

    let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(&rejects).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().take(4).collect::<Vec<_>>(),
        ["row", "reason", "model", "year"]
    );
    let refused: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let rows: Vec<&str> = refused.iter().map(|r| &r[0]).collect();
    assert_eq!(rows, ["1", "2", "3"]);
    assert!(refused[0][1].contains("column \"mileage\", row 1") && refused[0][1].contains("lots"));
    assert_eq!(&refused[0][2], "Focus", "the row's fields follow its reason");
    assert!(
        refused[1][1].contains("column \"mileage\", row 2"),
        "{}",
        &refused[1][1]
    );
    assert!(refused[2][1].contains("row 3"), "{}", &refused[2][1]);
}

#[test]
fn keep_columns_writes_each_rows_fields_before_its_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cars.csv");
    std::fs::write(
        &input,
        "id,model,year,transmission,mileage,fuelType,tax,mpg,engineSize\n\
         7, C-MAX,2014,Semi-Auto,40000,Diesel,160,50.4,2.0\n\
         9,EcoSport,2019,Automatic,1400,Petrol,150,44.1,1.0\n",
    )
    .unwrap();
    let output = dir.path().join("out.csv");
    let (ok, _, stderr) = xgserve(&[
        "predict",
        "--keep-columns",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let expected: Vec<f32> = serde_json::from_str(include_str!("fixtures/bento_example.response").trim()).unwrap();
    let text = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "id,model,year,transmission,mileage,fuelType,tax,mpg,engineSize,prediction"
    );
    assert_eq!(
        lines[1],
        format!(
            "7, C-MAX,2014,Semi-Auto,40000,Diesel,160,50.4,2.0,{}",
            f64::from(expected[0])
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "9,EcoSport,2019,Automatic,1400,Petrol,150,44.1,1.0,{}",
            f64::from(expected[1])
        )
    );

    let (ok, _, stderr) = xgserve(&["predict", "--keep-columns", "--input", input.to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("--keep-columns needs an --output ending in .csv"),
        "{stderr}"
    );
}

#[test]
fn the_progress_bar_shows_on_a_terminal_and_not_with_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let (header, lines) = ford_lines();
    let input = dir.path().join("cars.csv");
    let body: String = std::iter::once(header).chain(lines).map(|l| l + "\n").collect();
    std::fs::write(&input, body).unwrap();
    let output = dir.path().join("out.csv");
    let command = format!(
        "{} predict --input {} --output {}",
        env!("CARGO_BIN_EXE_xgserve"),
        input.display(),
        output.display()
    );
    // util-linux's `script` runs the command on a pseudo-terminal and copies what it shows.
    let on_terminal = |extra: &str| {
        let out = Command::new("script")
            .args(["-qec", &format!("{command} {extra}"), "/dev/null"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = on_terminal("");
    assert!(
        shown.contains("17965 rows scored, 0 refused") && shown.contains("rows/s"),
        "{shown}"
    );
    assert!(!on_terminal("--quiet").contains("rows/s"), "--quiet shows nothing");
}

/// The Ford rows as typed columns (text, integers, floats; `fuelType` dictionary-encoded, as
/// pandas writes categoricals), every 97th `mpg` missing; and the same rows as CSV.
fn ford_as_parquet_and_csv(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray};

    let (header, lines) = ford_lines();
    let mut csv_text = format!("{header}\n");
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    let missing = |i: usize| i.is_multiple_of(97);
    for (i, row) in rows.iter().enumerate() {
        let mut row = row.clone();
        if missing(i) {
            row[7].clear();
        }
        csv_text.push_str(&row.join(","));
        csv_text.push('\n');
    }
    let csv = dir.join("cars.csv");
    std::fs::write(&csv, csv_text).unwrap();

    let text = |c: usize| Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r[c].clone()))) as ArrayRef;
    let integer = |c: usize| {
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r[c].parse::<i64>().unwrap()),
        )) as ArrayRef
    };
    let float = |c: usize, skip: &dyn Fn(usize) -> bool| {
        let values = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (!skip(i)).then(|| r[c].parse::<f64>().unwrap()));
        Arc::new(Float64Array::from_iter(values)) as ArrayRef
    };
    let fuel: DictionaryArray<Int32Type> = rows.iter().map(|r| r[5].as_str()).collect();
    let names: Vec<&str> = header.split(',').collect();
    let columns = vec![
        text(0),
        integer(1),
        integer(2),
        text(3),
        integer(4),
        Arc::new(fuel) as ArrayRef,
        integer(6),
        float(7, &missing),
        float(8, &|_| false),
    ];
    let batch = RecordBatch::try_from_iter(names.into_iter().zip(columns)).unwrap();
    let parquet = dir.join("cars.parquet");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(File::create(&parquet).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    (parquet, csv)
}

/// The `prediction` column of a Parquet file, and the file's schema.
fn parquet_predictions(path: &Path) -> (Vec<f32>, arrow_schema::SchemaRef) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float32Type;
    use arrow_array::RecordBatchReader;

    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let schema = reader.schema();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        out.extend(
            batch
                .column_by_name("prediction")
                .unwrap()
                .as_primitive::<Float32Type>()
                .values()
                .iter(),
        );
    }
    (out, schema)
}

fn csv_predictions(path: &Path) -> Vec<f32> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("prediction"));
    lines.map(|l| l.parse().unwrap()).collect()
}

#[test]
fn parquet_in_and_out_scores_as_csv_does() {
    let dir = tempfile::tempdir().unwrap();
    let (parquet, csv) = ford_as_parquet_and_csv(dir.path());
    let run = |input: &Path, output: &str, extra: &[&str]| {
        let output = dir.path().join(output);
        let mut args = vec![
            "predict",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = xgserve(&args);
        assert!(ok, "{stderr}");
        output
    };
    let from_csv = csv_predictions(&run(&csv, "csv-to.csv", &[]));
    assert_eq!(from_csv.len(), 17_965);
    let expected = reference_predictions();
    let unchanged = (0..from_csv.len()).filter(|i| !i.is_multiple_of(97));
    assert!(
        unchanged
            .clone()
            .all(|i| from_csv[i].to_bits() == expected[i].to_bits()),
        "rows with their mpg are the pipeline's"
    );

    let bits = |v: &[f32]| v.iter().map(|p| p.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&csv_predictions(&run(&parquet, "parquet-to.csv", &[]))),
        bits(&from_csv),
        "Parquet in"
    );
    let (out, schema) = parquet_predictions(&run(&csv, "csv-to.parquet", &[]));
    assert_eq!(bits(&out), bits(&from_csv), "Parquet out");
    assert_eq!(schema.fields().len(), 1);
    let (out, schema) = parquet_predictions(&run(&parquet, "parquet-to.parquet", &["--keep-columns"]));
    assert_eq!(bits(&out), bits(&from_csv), "Parquet in and out");
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "model",
            "year",
            "price",
            "transmission",
            "mileage",
            "fuelType",
            "tax",
            "mpg",
            "engineSize",
            "prediction"
        ]
    );
    assert_eq!(
        schema.field(1).data_type(),
        &arrow_schema::DataType::Int64,
        "kept columns keep their types"
    );

    // A text column where a number is needed is refused before anything is scored, by name.
    let wrong = dir.path().join("wrong.parquet");
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "year",
        Arc::new(arrow_array::StringArray::from(vec!["2019"])) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(File::create(&wrong).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let (ok, _, stderr) = xgserve(&["predict", "--input", wrong.to_str().unwrap()]);
    assert!(!ok && stderr.contains("column \"model\""), "{stderr}");
}
