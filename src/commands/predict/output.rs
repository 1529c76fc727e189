//! Where `xgserve predict` writes a streamed file's predictions, in file order: a CSV file (a
//! header, then each row's prediction, after its fields with `--keep-columns`), an Apache Parquet
//! file (a float32 `prediction` column, after the input's columns with `--keep-columns`), or a JSON
//! array to a file or standard output; and the rejects file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::has_extension;
use crate::cli::PredictArgs;
use crate::input::Rows;
use crate::pyfloat;

/// Rows per Parquet row group: the writer holds one group's pages until it is full, so this bounds
/// its memory.
const ROW_GROUP_ROWS: usize = 64 * 1024;

pub(super) enum Output {
    Csv {
        writer: csv::Writer<BufWriter<File>>,
        keep: bool,
        path: PathBuf,
    },
    Parquet {
        writer: ArrowWriter<File>,
        schema: Arc<Schema>,
        keep: bool,
        path: PathBuf,
    },
    Json {
        out: BufWriter<Box<dyn Write>>,
        first: bool,
        path: Option<PathBuf>,
    },
}

impl Output {
    /// Opens the output `--output`'s extension names: the input's columns are `names`, with their
    /// Arrow types in `schema` for a Parquet input.
    pub(super) fn create(args: &PredictArgs, names: &[String], schema: Option<Arc<Schema>>) -> anyhow::Result<Self> {
        let path = args.output.clone();
        let is = |extension| path.as_deref().is_some_and(has_extension(extension));
        let (csv, parquet) = (is("csv"), is("parquet"));
        if args.keep_columns && !csv && !parquet {
            anyhow::bail!("--keep-columns needs an --output ending in .csv or .parquet");
        }
        let create = |path: &Path| File::create(path).with_context(|| format!("{}: cannot write", path.display()));
        let keep = args.keep_columns;
        match path {
            Some(path) if csv => {
                let mut writer = csv::Writer::from_writer(BufWriter::new(create(&path)?));
                let kept = if keep { names } else { &[] };
                writer.write_record(kept.iter().map(String::as_str).chain(["prediction"]))?;
                Ok(Self::Csv { writer, keep, path })
            }
            Some(path) if parquet => {
                let mut fields: Vec<Arc<Field>> = match (keep, schema) {
                    (false, _) => Vec::new(),
                    (true, Some(schema)) => schema.fields().iter().cloned().collect(),
                    // A CSV's columns are text.
                    (true, None) => names
                        .iter()
                        .map(|n| Arc::new(Field::new(n, DataType::Utf8, true)))
                        .collect(),
                };
                fields.push(Arc::new(Field::new("prediction", DataType::Float32, false)));
                let schema = Arc::new(Schema::new(fields));
                let properties = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let writer = ArrowWriter::try_new(create(&path)?, schema.clone(), Some(properties))?;
                Ok(Self::Parquet {
                    writer,
                    schema,
                    keep,
                    path,
                })
            }
            path => {
                let sink: Box<dyn Write> = match &path {
                    Some(path) => Box::new(create(path)?),
                    None => Box::new(std::io::stdout()),
                };
                let mut out = BufWriter::new(sink);
                out.write_all(b"[")?;
                Ok(Self::Json { out, first: true, path })
            }
        }
    }

    /// Writes the predictions of `rows` at the indices `kept`, in order.
    pub(super) fn rows(&mut self, rows: &Rows, kept: &[usize], predictions: &[f32]) -> anyhow::Result<()> {
        match self {
            Self::Csv { writer, keep, .. } => {
                let mut text = String::with_capacity(24);
                for (&row, &prediction) in kept.iter().zip(predictions) {
                    text.clear();
                    pyfloat::write_float(&mut text, f64::from(prediction));
                    match (*keep, rows) {
                        (false, _) => writer.write_record([text.as_str()])?,
                        (true, Rows::Csv(_, records)) => {
                            writer.write_record(records[row].iter().chain([text.as_str()]))?
                        }
                        (true, Rows::Arrow(_)) => {
                            let fields = rows.fields(row);
                            writer.write_record(fields.iter().map(String::as_str).chain([text.as_str()]))?
                        }
                    }
                }
            }
            Self::Parquet {
                writer, schema, keep, ..
            } => {
                let mut columns: Vec<ArrayRef> = Vec::new();
                if *keep {
                    match rows {
                        Rows::Arrow(batch) => {
                            let indices = UInt32Array::from_iter_values(kept.iter().map(|&i| i as u32));
                            for column in batch.columns() {
                                columns.push(arrow_select::take::take(column.as_ref(), &indices, None)?);
                            }
                        }
                        Rows::Csv(_, records) => {
                            for field in 0..schema.fields().len() - 1 {
                                let values = kept.iter().map(|&row| records[row].get(field));
                                columns.push(Arc::new(StringArray::from_iter(values)));
                            }
                        }
                    }
                }
                columns.push(Arc::new(Float32Array::from(predictions.to_vec())));
                writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
            }
            Self::Json { out, first, .. } => {
                let mut text = String::with_capacity(24);
                for &prediction in predictions {
                    if !std::mem::take(first) {
                        out.write_all(b",")?;
                    }
                    text.clear();
                    pyfloat::write_float(&mut text, f64::from(prediction));
                    out.write_all(text.as_bytes())?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::Csv { mut writer, .. } => writer.flush()?,
            Self::Parquet { writer, .. } => {
                writer.close()?;
            }
            Self::Json { mut out, .. } => {
                out.write_all(b"]\n")?;
                out.flush()?;
            }
        }
        Ok(())
    }

    /// Removes the file written so far (standard output cannot be taken back).
    pub(super) fn abandon(self) {
        let path = match self {
            Self::Csv { path, .. } | Self::Parquet { path, .. } => Some(path),
            Self::Json { path, .. } => path,
        };
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The rows that could not be scored: a CSV of each one's row (from 0, after a CSV's header), the
/// reason, and its fields as read.
pub(super) struct Rejects(csv::Writer<BufWriter<File>>);

impl Rejects {
    pub(super) fn create(path: &Path, names: &[String]) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("{}: cannot write", path.display()))?;
        let mut writer = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(BufWriter::new(file));
        writer.write_record(["row", "reason"].into_iter().chain(names.iter().map(String::as_str)))?;
        Ok(Self(writer))
    }

    pub(super) fn row(&mut self, row: usize, reason: &str, fields: &[String]) -> anyhow::Result<()> {
        let row = row.to_string();
        let head = [row.as_str(), reason];
        self.0
            .write_record(head.into_iter().chain(fields.iter().map(String::as_str)))?;
        Ok(())
    }

    pub(super) fn finish(mut self) -> anyhow::Result<()> {
        self.0.flush()?;
        Ok(())
    }
}
