//! A file read a chunk of rows at a time, for batch scoring: CSV (`csv.rs`) or Apache Parquet
//! (`parquet.rs`). Each chunk holds its rows as read, to be written beside their predictions or to
//! a rejects file, and the rows that decoded as one batch.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::Schema;

use super::csv::CsvChunks;
use super::parquet::ParquetChunks;
use crate::preprocess::{Batch, InputError};

/// Rows of a file, in file order.
pub struct Chunk {
    /// The file row (counted from 0, after a CSV's header) of the first row.
    pub first_row: usize,
    pub rows: Rows,
    /// The rows that decoded, as one batch (`None` when none did), and the index in `rows` of each
    /// of its rows.
    pub batch: Option<Batch>,
    pub decoded: Vec<usize>,
    /// The rows that did not decode, by index in `rows`, with why.
    pub refused: Vec<(usize, InputError)>,
    /// How far into the file the chunk ends, in the units of [`Chunks::size`].
    pub progress: u64,
}

/// A chunk's rows as the file held them.
pub enum Rows {
    /// CSV records; an empty one where a line could not be read as a record.
    Csv(Vec<::csv::StringRecord>),
    Arrow(RecordBatch),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Csv(records) => records.len(),
            Rows::Arrow(batch) => batch.num_rows(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`'s fields as text (a Parquet value as Arrow displays it, a null as nothing).
    pub fn fields(&self, i: usize) -> Vec<String> {
        match self {
            Rows::Csv(records) => records[i].iter().map(str::to_owned).collect(),
            Rows::Arrow(batch) => {
                let options = FormatOptions::default();
                batch
                    .columns()
                    .iter()
                    .map(|column| match ArrayFormatter::try_new(column.as_ref(), &options) {
                        Ok(format) => format.value(i).to_string(),
                        Err(_) => String::new(),
                    })
                    .collect()
            }
        }
    }
}

/// A file being read a chunk at a time.
pub enum Chunks<R> {
    /// A CSV file and its size in bytes.
    Csv(CsvChunks<R>, u64),
    Parquet(ParquetChunks),
}

impl<R: std::io::Read> Chunks<R> {
    /// The next chunk, `None` at the end; an error only when the file cannot be read on (not for
    /// a row that cannot be decoded).
    pub fn next_chunk(&mut self) -> Result<Option<Chunk>, InputError> {
        match self {
            Chunks::Csv(csv, _) => csv.next_chunk(),
            Chunks::Parquet(parquet) => parquet.next_chunk(),
        }
    }

    /// The file's column names, in its order.
    pub fn names(&self) -> Vec<String> {
        match self {
            Chunks::Csv(csv, _) => csv.header().iter().map(str::to_owned).collect(),
            Chunks::Parquet(parquet) => parquet.schema().fields().iter().map(|f| f.name().clone()).collect(),
        }
    }

    /// How far a whole read goes, in the units of [`Chunk::progress`]: bytes of a CSV file, rows of
    /// a Parquet one.
    pub fn size(&self) -> u64 {
        match self {
            Chunks::Csv(_, bytes) => *bytes,
            Chunks::Parquet(parquet) => parquet.total_rows(),
        }
    }

    /// The file's Arrow schema, for a Parquet file.
    pub fn schema(&self) -> Option<Arc<Schema>> {
        match self {
            Chunks::Csv(..) => None,
            Chunks::Parquet(parquet) => Some(parquet.schema().clone()),
        }
    }
}
