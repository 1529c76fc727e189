//! The built-in Postgres sink (`--pg-sink`), for deployments without Kafka Connect: priced rows are
//! upserted by their key column and deletes delete, in one transaction per batch, before the batch's
//! offsets are committed, as the seed's JDBC sink (`insert.mode=upsert`, `pk.mode=record_key`) did.
//! Postgres converts the JSON values to the table's column types (`jsonb_populate_recordset`).
//!
//! Every change carries its source position (partition and offset): a key's changes all come from
//! one partition, in order, so a change at an older position than the key's last applied one is a
//! replay (a batch consumed again after a crash or a rebalance) or a delayed copy, and is skipped.
//! The positions live in a table of their own (`<table>_xgserve_positions`), written in the same
//! transaction, so the sink table keeps exactly the seed's columns and deletes stay deletes.

use anyhow::Context;
use serde_json::{Map, Value};
use tokio_postgres::NoTls;

/// Where a change came from: its source partition and offset.
pub type Position = (i32, i64);

/// One change for the table, in consumption order.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The row as written to the sink topic, and its Connect schema types when it had a schema.
    Upsert {
        row: Map<String, Value>,
        types: Option<super::debezium::RowTypes>,
        position: Position,
    },
    /// The key's columns of a deleted row.
    Delete {
        key: Map<String, Value>,
        position: Position,
    },
}

impl Op {
    /// The row (upserts) or the key's columns (deletes) the statement takes.
    fn row(&self) -> &Map<String, Value> {
        match self {
            Op::Upsert { row, .. } => row,
            Op::Delete { key, .. } => key,
        }
    }

    fn position(&self) -> Position {
        match self {
            Op::Upsert { position, .. } | Op::Delete { position, .. } => *position,
        }
    }
}

/// A connection to the sink table.
pub struct Sink {
    client: tokio_postgres::Client,
    /// The table's name, as given.
    name: String,
    /// The key column.
    key: String,
    /// Written once the table is known to exist (its columns name the upsert's updates).
    statements: Option<Statements>,
}

/// The sink's statements; each takes a JSON array (`$1`).
struct Statements {
    upsert: String,
    delete: String,
    /// Records the positions of `[{"k", "p", "o"}]` where they are newer than the key's last, and
    /// returns the keys whose changes are to apply.
    advance: String,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl Sink {
    /// Connects; the table is created (from the first row's schema) if it does not exist.
    pub async fn connect(url: &str, table: &str, key: &str) -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .context("cannot connect to the --pg-sink database")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "the Postgres sink connection failed");
            }
        });
        let mut sink = Self {
            client,
            name: table.to_owned(),
            key: key.to_owned(),
            statements: None,
        };
        sink.statements = sink.statements().await?;
        Ok(sink)
    }

    /// The statements for the table as it is, or `None` while it does not exist.
    async fn statements(&self) -> anyhow::Result<Option<Statements>> {
        let rows = self
            .client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&self.name],
            )
            .await
            .context("cannot read the sink table's columns")?;
        if rows.is_empty() {
            return Ok(None);
        }
        let (table, key) = (quote(&self.name), quote(&self.key));
        let positions = quote(&format!("{}_xgserve_positions", self.name));
        self.client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {positions} (key TEXT PRIMARY KEY, partition INTEGER NOT NULL, \"offset\" BIGINT NOT NULL)"
            ))
            .await
            .context("cannot create the sink's positions table")?;
        let updates: Vec<String> = rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|c| *c != self.key)
            .map(|c| format!("{c} = EXCLUDED.{c}", c = quote(&c)))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_owned()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        let rows = format!("jsonb_populate_recordset(NULL::{table}, $1::text::jsonb)");
        Ok(Some(Statements {
            upsert: format!("INSERT INTO {table} SELECT * FROM {rows} ON CONFLICT ({key}) DO {action}"),
            delete: format!("DELETE FROM {table} USING {rows} AS k WHERE {table}.{key} = k.{key}"),
            // A different partition means the topic was repartitioned: the newer change wins.
            advance: format!(
                "INSERT INTO {positions} AS s SELECT * FROM jsonb_to_recordset($1::text::jsonb) \
                 AS x(key TEXT, partition INTEGER, \"offset\" BIGINT) \
                 ON CONFLICT (key) DO UPDATE SET partition = EXCLUDED.partition, \"offset\" = EXCLUDED.\"offset\" \
                 WHERE s.partition <> EXCLUDED.partition OR s.\"offset\" < EXCLUDED.\"offset\" RETURNING key"
            ),
        }))
    }

    /// Applies a batch's changes in one transaction (each run of upserts, and each run of deletes,
    /// in one statement), skipping each change older than its key's last applied one. When Postgres
    /// refuses the data (a constraint, a value its column cannot hold), each change is applied again
    /// alone, and the refused ones are returned, by index, with Postgres' reason: for the dead
    /// letters. Any other error (the connection, the table) fails the batch.
    pub async fn apply(&mut self, ops: &[Op]) -> anyhow::Result<Applied> {
        match self.apply_together(ops).await {
            Ok(changed) => Ok(Applied {
                changed,
                refused: Vec::new(),
            }),
            Err(e) if refused_data(&e).is_some() => self.apply_each(ops).await,
            Err(e) => Err(e),
        }
    }

    /// One transaction, one savepoint per change: the refused changes roll back alone.
    async fn apply_each(&mut self, ops: &[Op]) -> anyhow::Result<Applied> {
        let mut transaction = self.client.transaction().await?;
        let statements = self.statements.as_ref().context("the sink table has no columns")?;
        let mut applied = Applied::default();
        for (i, op) in ops.iter().enumerate() {
            let savepoint = transaction.savepoint(format!("op{i}")).await?;
            match apply_run(&savepoint, statements, &self.key, std::slice::from_ref(op)).await {
                Ok(changed) => {
                    savepoint.commit().await?;
                    applied.changed += changed;
                }
                Err(e) => match refused_data(&e) {
                    Some(reason) => {
                        savepoint.rollback().await?;
                        applied.refused.push((i, reason));
                    }
                    None => return Err(e),
                },
            }
        }
        transaction.commit().await.context("commit the sink transaction")?;
        Ok(applied)
    }

    async fn apply_together(&mut self, ops: &[Op]) -> anyhow::Result<u64> {
        if self.statements.is_none() {
            let Some(Op::Upsert { row, types, .. }) = ops.iter().find(|o| matches!(o, Op::Upsert { .. })) else {
                // Deletes only, and no table yet: nothing to delete.
                return Ok(0);
            };
            self.create(row, types.as_deref()).await?;
        }
        let statements = self.statements.as_ref().context("the sink table has no columns")?;
        let transaction = self.client.transaction().await?;
        let mut changed = 0;
        for run in ops.chunk_by(|a, b| std::mem::discriminant(a) == std::mem::discriminant(b)) {
            changed += apply_run(&transaction, statements, &self.key, run).await?;
        }
        transaction.commit().await.context("commit the sink transaction")?;
        Ok(changed)
    }

    /// Creates the table from a row: column types from its Connect schema, or from its values.
    async fn create(&mut self, row: &Map<String, Value>, types: Option<&[(String, String)]>) -> anyhow::Result<()> {
        // The schema's field order (the table's), else the row's.
        let names: Vec<&str> = match types {
            Some(types) => types.iter().map(|(f, _)| f.as_str()).collect(),
            None => row.keys().map(String::as_str).collect(),
        };
        let mut columns = Vec::new();
        for name in names {
            let connect = types
                .and_then(|t| t.iter().find(|(f, _)| f == name))
                .map(|(_, t)| t.as_str());
            let sql = match connect {
                Some("int8" | "int16") => "SMALLINT",
                Some("int32") => "INTEGER",
                Some("int64") => "BIGINT",
                Some("float") => "REAL",
                Some("double") => "DOUBLE PRECISION",
                Some("boolean") => "BOOLEAN",
                Some(_) => "TEXT",
                None => match row.get(name) {
                    Some(Value::Number(n)) if n.is_i64() || n.is_u64() => "BIGINT",
                    Some(Value::Number(_)) => "DOUBLE PRECISION",
                    Some(Value::Bool(_)) => "BOOLEAN",
                    _ => "TEXT",
                },
            };
            let key = if name == self.key { " PRIMARY KEY" } else { "" };
            columns.push(format!("{} {sql}{key}", quote(name)));
        }
        let statement = format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            quote(&self.name),
            columns.join(", ")
        );
        self.client
            .batch_execute(&statement)
            .await
            .with_context(|| format!("cannot create the sink table: {statement}"))?;
        self.statements = self.statements().await?;
        tracing::info!(table = %self.name, "created the sink table");
        Ok(())
    }
}

/// Applies a run of changes of one kind (upserts, or deletes) in one statement, after recording
/// their positions; returns the rows changed.
async fn apply_run(
    transaction: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    key: &str,
    run: &[Op],
) -> anyhow::Result<u64> {
    let statement = match &run[0] {
        Op::Upsert { .. } => &statements.upsert,
        Op::Delete { .. } => &statements.delete,
    };
    let latest = last_per_key(key, run);
    let positions: Vec<Value> = latest
        .iter()
        .map(|(text, op)| {
            let (partition, offset) = op.position();
            serde_json::json!({"key": text, "partition": partition, "offset": offset})
        })
        .collect();
    let newer: std::collections::HashSet<String> = transaction
        .query(&statements.advance, &[&serde_json::to_string(&positions)?])
        .await
        .context("cannot record the sink's positions")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rows: Vec<&Map<String, Value>> = latest
        .into_iter()
        .filter(|(text, _)| newer.contains(text))
        .map(|(_, op)| op.row())
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let json = serde_json::to_string(&rows)?;
    transaction
        .execute(statement, &[&json])
        .await
        .with_context(|| format!("cannot apply the batch to the sink: {statement}"))
}

/// What a batch did to the table.
#[derive(Debug, Default)]
pub struct Applied {
    /// Rows upserted or deleted.
    pub changed: u64,
    /// Changes Postgres refused, by their index in the batch, with its reason.
    pub refused: Vec<(usize, String)>,
}

/// Postgres' reason when it refused the data itself (SQLSTATE classes 22, data exception, and 23,
/// integrity constraint violation): retrying will not help, and the other changes are fine.
fn refused_data(error: &anyhow::Error) -> Option<String> {
    let db = error
        .chain()
        .find_map(|e| e.downcast_ref::<tokio_postgres::Error>())?
        .as_db_error()?;
    let class = &db.code().code()[..2];
    matches!(class, "22" | "23").then(|| format!("{} ({})", db.message(), db.code().code()))
}

/// A run of changes with each key once, its last (a statement may touch a row only once).
/// Each with its key as text, worked out once.
fn last_per_key<'a>(key: &str, run: &'a [Op]) -> Vec<(String, &'a Op)> {
    let mut seen = std::collections::HashSet::new();
    let mut ops: Vec<(String, &Op)> = run
        .iter()
        .rev()
        .map(|op| (key_text(key, op), op))
        .filter(|(text, _)| seen.insert(text.clone()))
        .collect();
    ops.reverse();
    ops
}

/// A change's key as text, the positions table's key.
fn key_text(key: &str, op: &Op) -> String {
    op.row().get(key).map_or_else(String::new, Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn upsert(id: i64, price: i64) -> Op {
        let row = json!({"id": id, "price": price});
        Op::Upsert {
            row: row.as_object().unwrap().clone(),
            types: None,
            position: (0, price),
        }
    }

    #[test]
    fn a_run_of_upserts_keeps_each_keys_last_row_in_order() {
        let run = [
            upsert(1, 10),
            upsert(2, 20),
            upsert(1, 11),
            upsert(3, 30),
            upsert(2, 21),
        ];
        let rows: Vec<(i64, i64)> = last_per_key("id", &run)
            .iter()
            .map(|(_, op)| (op.row()["id"].as_i64().unwrap(), op.row()["price"].as_i64().unwrap()))
            .collect();
        assert_eq!(rows, [(1, 11), (3, 30), (2, 21)]);
    }
}
