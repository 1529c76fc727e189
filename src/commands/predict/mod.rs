//! `xgserve predict`: offline batch scoring of a file. The predictions of a CSV or Parquet file are
//! streamed: one thread reads it a chunk at a time, `--threads` score the chunks, and this one
//! writes them in file order (`output.rs`), so memory stays bounded whatever the file's size. A
//! JSON file, and the `--features` and `--explain` outputs, are made from the whole file at once.

mod output;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::Path;
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::bundle::{single_row, Model};
use crate::cli::PredictArgs;
use crate::explain::Attribution;
use crate::input::{self, Chunk, Chunks, CsvChunks, Decoder, Limits, ParquetChunks, Raw};
use crate::preprocess::InputError;
use crate::pyfloat;
use output::{Output, Rejects};

pub fn run(args: &PredictArgs) -> anyhow::Result<()> {
    let model = if args.features {
        Model::load_without_parity(&args.model)?
    } else {
        Model::load(&args.model)?
    };
    let streamed = has_extension("csv")(&args.input) || has_extension("parquet")(&args.input);
    if streamed && !args.features && !args.explain {
        return stream(args, &model);
    }
    if has_extension("parquet")(&args.input) {
        anyhow::bail!("--features and --explain read CSV or JSON");
    }
    if args.rejects.is_some() || args.keep_columns {
        anyhow::bail!("--rejects and --keep-columns need a .csv or .parquet --input");
    }
    whole_file(args, &model)
}

/// Reads the whole file, then writes its predictions, features or explanations.
fn whole_file(args: &PredictArgs, model: &Model) -> anyhow::Result<()> {
    let source = args.input.display();
    let body = std::fs::read(&args.input).with_context(|| format!("{source}: cannot read"))?;
    let limits = Limits { max_rows: usize::MAX };
    let inputs = model.preprocessor.inputs();
    let batch = if has_extension("csv")(&args.input) {
        input::decode_csv(&body, inputs, limits)
    } else {
        input::decode_json(&body, inputs, limits)
    }
    .with_context(|| format!("{source}"))?;
    let mut text = if args.features {
        let features = model
            .preprocessor
            .transform(&batch)
            .with_context(|| format!("{source}"))?;
        let rows: Vec<String> = features
            .rows()
            .into_iter()
            .map(|row| pyfloat::float32_array(&row.to_vec()))
            .collect();
        format!("[{}]", rows.join(","))
    } else if args.explain {
        let explanation = model.explain(&batch).with_context(|| format!("{source}"))?;
        let by = Attribution::parse(&args.explain_by).expect("clap checked the value");
        let csv = match args.format.as_deref() {
            Some(format) => format == "csv",
            None => args
                .output
                .as_ref()
                .and_then(|path| path.extension())
                .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
        };
        if csv {
            explanation.to_csv(model, by)
        } else {
            explanation.to_json(model, by)
        }
    } else {
        pyfloat::float32_array(&model.predict(&batch).with_context(|| format!("{source}"))?)
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// Rows of a Parquet chunk, and bytes of a CSV one (about 4,000 Ford rows): big enough that a
/// thread's hand-over costs little, small enough that the chunks in flight hold a few megabytes.
const CHUNK_ROWS: usize = 4096;
const CHUNK_BYTES: usize = 256 * 1024;

/// Streams a CSV or Parquet file through the model: one thread reads chunks, `--threads` decode
/// and score them, this one writes them in file order. Chunks in flight are bounded (a token per
/// chunk, handed back when it is written), so memory stays bounded whatever the file's size.
fn stream(args: &PredictArgs, model: &Model) -> anyhow::Result<()> {
    let source = args.input.display().to_string();
    let file = File::open(&args.input).with_context(|| format!("{source}: cannot read"))?;
    let inputs = model.preprocessor.inputs();
    let mut chunks = if has_extension("parquet")(&args.input) {
        Chunks::Parquet(ParquetChunks::open(file, inputs, CHUNK_ROWS).with_context(|| source.clone())?)
    } else {
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let reader = CsvChunks::new(BufReader::with_capacity(1 << 20, file), inputs, CHUNK_BYTES);
        Chunks::Csv(reader.with_context(|| source.clone())?, bytes)
    };
    let names = chunks.names();
    let decoder = chunks.decoder(args.keep_columns || args.rejects.is_some());
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut output = Output::create(args, &names, chunks.schema())?;
    let mut rejects = match &args.rejects {
        Some(path) => Some(Rejects::create(path, &names)?),
        None => None,
    };
    let shown = !args.quiet && std::io::stderr().is_terminal();
    let progress = Progress::new(chunks.size(), shown);
    let in_flight = threads + 2;

    let (work, work_queue) = mpsc::sync_channel::<(usize, Raw, u64)>(threads);
    let work_queue = Mutex::new(work_queue);
    let (done, finished) = mpsc::sync_channel::<(usize, Scored, u64)>(threads);
    let (give_back, tokens) = mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        give_back.send(()).expect("the channel holds every token");
    }
    let written = std::thread::scope(|scope| -> anyhow::Result<Tally> {
        let reader = scope.spawn(move || -> Result<(), InputError> {
            for seq in 0.. {
                let Some((raw, progress)) = chunks.next_raw()? else {
                    break;
                };
                // Either fails only when the writer has stopped.
                if tokens.recv().is_err() || work.send((seq, raw, progress)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        for _ in 0..threads {
            let (work_queue, done, decoder) = (&work_queue, done.clone(), &decoder);
            scope.spawn(move || loop {
                let next = work_queue.lock().expect("no worker panics holding the queue").recv();
                let Ok((seq, raw, progress)) = next else { break };
                if done.send((seq, score(model, decoder, raw), progress)).is_err() {
                    break;
                }
            });
        }
        drop(done);
        let mut tally = Tally::default();
        let mut waiting = BTreeMap::new();
        let mut next = 0;
        let wrote = (|| -> anyhow::Result<()> {
            for (seq, scored, read) in finished.iter() {
                waiting.insert(seq, (scored, read));
                while let Some((scored, read)) = waiting.remove(&next) {
                    write(&scored, &mut output, rejects.as_mut(), &mut tally).with_context(|| source.clone())?;
                    progress.show(read, &tally);
                    give_back.send(()).ok();
                    next += 1;
                }
            }
            Ok(())
        })();
        // On an error the other threads see their channels close and stop.
        drop((finished, give_back));
        let read = reader.join().expect("the reader does not panic");
        wrote?;
        read.with_context(|| source.clone())?;
        Ok(tally)
    });
    progress.finish();
    let tally = match written {
        Ok(tally) => tally,
        Err(e) => {
            // A half-written file could pass for a whole one.
            output.abandon();
            return Err(e);
        }
    };
    output.finish()?;
    if let Some(rejects) = rejects {
        rejects.finish()?;
    }
    if shown {
        eprintln!("{}", tally.summary());
    }
    Ok(())
}

/// A chunk with each row's outcome, by index in its rows.
struct Scored {
    chunk: Chunk,
    outcomes: Vec<Result<f32, InputError>>,
}

/// Decodes a chunk and scores its decoded rows in one call; when the model refuses one, row by
/// row, so that each row is refused for its own reason and the others are scored. Rows are the
/// chunk's own, counted from 0.
fn score(model: &Model, decoder: &Decoder, raw: Raw) -> Scored {
    let mut chunk = decoder.decode(raw);
    let mut outcomes: Vec<Result<f32, InputError>> = (0..chunk.rows.len()).map(|_| Ok(f32::NAN)).collect();
    if let Some(batch) = &chunk.batch {
        match model.predict(batch) {
            Ok(predictions) => {
                for (&row, prediction) in chunk.decoded.iter().zip(predictions) {
                    outcomes[row] = Ok(prediction);
                }
            }
            Err(_) => {
                for (i, &row) in chunk.decoded.iter().enumerate() {
                    outcomes[row] = model
                        .predict(&single_row(batch, i))
                        .map(|p| p[0])
                        .map_err(|e| e.at_row(row));
                }
            }
        }
    }
    for (row, reason) in std::mem::take(&mut chunk.refused) {
        outcomes[row] = Err(reason);
    }
    Scored { chunk, outcomes }
}

/// Writes a scored chunk in order: predictions to the output, refused rows to the rejects file
/// (each said of its row in the file), or, without one, the first refused row is the run's error.
fn write(
    scored: &Scored,
    output: &mut Output,
    mut rejects: Option<&mut Rejects>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let mut kept = Vec::with_capacity(scored.outcomes.len());
    let mut predictions = Vec::with_capacity(scored.outcomes.len());
    for (i, outcome) in scored.outcomes.iter().enumerate() {
        match outcome {
            Ok(prediction) => {
                kept.push(i);
                predictions.push(*prediction);
            }
            Err(reason) => {
                let row = tally.rows() + i;
                let reason = match reason.clone().at_row(row) {
                    // A whole row's fault says which row in its message only here.
                    r if r.column.is_none() => format!("row {row}: {}", r.message),
                    r => r.message,
                };
                match rejects.as_deref_mut() {
                    Some(rejects) => rejects.row(row, &reason, &scored.chunk.rows.fields(i))?,
                    None => anyhow::bail!("{reason} (write such rows elsewhere and go on with --rejects FILE)"),
                }
            }
        }
    }
    output.rows(&scored.chunk.rows, &kept, &predictions)?;
    tally.scored += kept.len() as u64;
    tally.refused += (scored.outcomes.len() - kept.len()) as u64;
    Ok(())
}

/// Rows written so far, and since when.
struct Tally {
    scored: u64,
    refused: u64,
    since: Instant,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            scored: 0,
            refused: 0,
            since: Instant::now(),
        }
    }
}

impl Tally {
    /// Rows written or refused so far: the file row of the next.
    fn rows(&self) -> usize {
        (self.scored + self.refused) as usize
    }

    fn rate(&self) -> f64 {
        (self.scored + self.refused) as f64 / self.since.elapsed().as_secs_f64().max(1e-9)
    }

    fn summary(&self) -> String {
        format!(
            "{} rows scored, {} refused, in {:.1} s ({:.0} rows/s)",
            self.scored,
            self.refused,
            self.since.elapsed().as_secs_f64(),
            self.rate()
        )
    }
}

/// A progress bar on standard error, by bytes (CSV) or rows (Parquet) read: rows per second and
/// time left. Hidden when standard error is not a terminal, or with `--quiet`.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(size: u64, shown: bool) -> Self {
        Self(shown.then(|| {
            let bar = ProgressBar::new(size);
            let style = ProgressStyle::with_template("{bar:40} {percent:>3}%  {msg}  {elapsed} elapsed, {eta} left")
                .expect("the template is valid");
            bar.set_style(style);
            bar
        }))
    }

    fn show(&self, read: u64, tally: &Tally) {
        if let Some(bar) = &self.0 {
            bar.set_position(read);
            bar.set_message(format!(
                "{} rows, {:.0} rows/s",
                tally.scored + tally.refused,
                tally.rate()
            ));
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

fn has_extension(extension: &'static str) -> impl Fn(&Path) -> bool {
    move |path| path.extension().is_some_and(|e| e.eq_ignore_ascii_case(extension))
}
