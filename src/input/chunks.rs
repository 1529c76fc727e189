//! A file read a chunk of rows at a time, for batch scoring: CSV (`csv.rs`) or Apache Parquet
//! (`parquet.rs`). Each chunk holds its rows as read, to be written beside their predictions or to
//! a rejects file, and the rows that decoded as one batch.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::Schema;

use super::csv::{CsvChunks, CsvDecoder};
use super::parquet::{ParquetChunks, ParquetDecoder};
use crate::preprocess::{Batch, InputError};

/// A chunk as read, before it is decoded.
pub enum Raw {
    /// Whole CSV records.
    Csv(Vec<u8>),
    Arrow(RecordBatch),
}

/// Rows of a file, in file order, decoded. Rows are counted from the chunk's first: only the
/// writer, which sees every chunk in order, knows where they stand in the file.
pub struct Chunk {
    pub rows: Rows,
    /// The rows that decoded, as one batch (`None` when none did), and the index in `rows` of each
    /// of its rows.
    pub batch: Option<Batch>,
    pub decoded: Vec<usize>,
    /// The rows that did not decode, by index in `rows`, with why.
    pub refused: Vec<(usize, InputError)>,
}

/// A chunk's rows as the file held them.
pub enum Rows {
    /// How many CSV records, and the records themselves when the output or a rejects file needs
    /// their fields (an empty one where a line could not be read as a record).
    Csv(usize, Vec<::csv::StringRecord>),
    Arrow(RecordBatch),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Csv(count, _) => *count,
            Rows::Arrow(batch) => batch.num_rows(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`'s fields as text (a Parquet value as Arrow displays it, a null as nothing).
    pub fn fields(&self, i: usize) -> Vec<String> {
        match self {
            Rows::Csv(_, records) => records
                .get(i)
                .map_or_else(Vec::new, |r| r.iter().map(str::to_owned).collect()),
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

/// Decodes the chunks of one file; shared by the scoring threads.
pub enum Decoder {
    Csv(CsvDecoder),
    Parquet(ParquetDecoder),
}

impl Decoder {
    pub fn decode(&self, raw: Raw) -> Chunk {
        match (self, raw) {
            (Decoder::Csv(csv), Raw::Csv(bytes)) => csv.decode(&bytes),
            (Decoder::Parquet(parquet), Raw::Arrow(batch)) => parquet.decode(batch),
            _ => unreachable!("a file's chunks are of its own kind"),
        }
    }
}

impl<R: std::io::Read> Chunks<R> {
    /// The next chunk as read and how far into the file it ends (in the units of [`Self::size`]);
    /// `None` at the end. An error only when the file cannot be read on.
    pub fn next_raw(&mut self) -> Result<Option<(Raw, u64)>, InputError> {
        Ok(match self {
            Chunks::Csv(csv, _) => csv.next_raw()?.map(|(bytes, at)| (Raw::Csv(bytes), at)),
            Chunks::Parquet(parquet) => parquet.next_raw()?.map(|(batch, at)| (Raw::Arrow(batch), at)),
        })
    }

    /// What decodes the chunks; `records` says whether CSV chunks keep their records.
    pub fn decoder(&self, records: bool) -> Decoder {
        match self {
            Chunks::Csv(csv, _) => {
                let mut decoder = csv.decoder().clone();
                decoder.keep_records = records;
                Decoder::Csv(decoder)
            }
            Chunks::Parquet(parquet) => Decoder::Parquet(parquet.decoder().clone()),
        }
    }

    /// The file's column names, in its order.
    pub fn names(&self) -> Vec<String> {
        match self {
            Chunks::Csv(csv, _) => csv.decoder().header().iter().map(str::to_owned).collect(),
            Chunks::Parquet(parquet) => parquet.schema().fields().iter().map(|f| f.name().clone()).collect(),
        }
    }

    /// How far a whole read goes: bytes of a CSV file, rows of a Parquet one.
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
