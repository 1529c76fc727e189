//! The built-in Postgres sink (`--pg-sink`), for deployments without Kafka Connect: priced rows are
//! upserted by their key column and deletes delete, in one transaction per batch, before the batch's
//! offsets are committed, as the seed's JDBC sink (`insert.mode=upsert`, `pk.mode=record_key`) did.
//! Postgres converts the JSON values to the table's column types (`jsonb_populate_recordset`).

use anyhow::Context;
use serde_json::{Map, Value};
use tokio_postgres::NoTls;

/// One change for the table, in consumption order.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The row as written to the sink topic, and its Connect schema types when it had a schema.
    Upsert {
        row: Map<String, Value>,
        types: Option<Vec<(String, String)>>,
    },
    /// The key's columns of a deleted row.
    Delete(Map<String, Value>),
}

/// A connection to the sink table.
pub struct Sink {
    client: tokio_postgres::Client,
    /// The table, as a quoted identifier.
    table: String,
    /// The key column.
    key: String,
    /// The table's columns once it is known to exist.
    columns: Option<Vec<String>>,
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
            table: quote(table),
            key: key.to_owned(),
            columns: None,
        };
        sink.columns = sink.table_columns(table).await?;
        Ok(sink)
    }

    async fn table_columns(&self, table: &str) -> anyhow::Result<Option<Vec<String>>> {
        let rows = self
            .client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .await
            .context("cannot read the sink table's columns")?;
        Ok((!rows.is_empty()).then(|| rows.iter().map(|r| r.get(0)).collect()))
    }

    /// Applies a batch's changes in one transaction.
    pub async fn apply(&mut self, ops: &[Op]) -> anyhow::Result<u64> {
        if ops.is_empty() {
            return Ok(0);
        }
        if self.columns.is_none() {
            if let Some(Op::Upsert { row, types }) = ops.iter().find(|o| matches!(o, Op::Upsert { .. })) {
                self.create(row, types.as_deref()).await?;
            }
        }
        let upsert = self.upsert_statement();
        let delete = format!(
            "DELETE FROM {t} USING jsonb_populate_recordset(NULL::{t}, $1::text::jsonb) AS k \
             WHERE {t}.{k} = k.{k}",
            t = self.table,
            k = quote(&self.key)
        );
        let transaction = self.client.transaction().await?;
        let mut changed = 0;
        // Runs of upserts go in one statement; a row may appear once per statement, so the last wins.
        let mut i = 0;
        while i < ops.len() {
            let upserts = ops[i..].iter().take_while(|o| matches!(o, Op::Upsert { .. })).count();
            if upserts > 0 {
                let mut rows: Vec<&Map<String, Value>> = Vec::with_capacity(upserts);
                for op in &ops[i..i + upserts] {
                    let Op::Upsert { row, .. } = op else { unreachable!() };
                    let key = row.get(&self.key);
                    rows.retain(|r| r.get(&self.key) != key);
                    rows.push(row);
                }
                let json = serde_json::to_string(&rows)?;
                let statement = upsert.as_deref().context("the sink table has no columns")?;
                changed += transaction
                    .execute(statement, &[&json])
                    .await
                    .context("upsert into the sink")?;
                i += upserts;
            } else {
                let Op::Delete(key) = &ops[i] else { unreachable!() };
                let json = serde_json::to_string(&[key])?;
                changed += transaction
                    .execute(&delete, &[&json])
                    .await
                    .context("delete from the sink")?;
                i += 1;
            }
        }
        transaction.commit().await.context("commit the sink transaction")?;
        Ok(changed)
    }

    fn upsert_statement(&self) -> Option<String> {
        let columns = self.columns.as_ref()?;
        let key = quote(&self.key);
        let updates: Vec<String> = columns
            .iter()
            .filter(|c| **c != self.key)
            .map(|c| format!("{c} = EXCLUDED.{c}", c = quote(c)))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_owned()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        Some(format!(
            "INSERT INTO {t} SELECT * FROM jsonb_populate_recordset(NULL::{t}, $1::text::jsonb) \
             ON CONFLICT ({key}) DO {action}",
            t = self.table
        ))
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
        let statement = format!("CREATE TABLE IF NOT EXISTS {} ({})", self.table, columns.join(", "));
        self.client
            .batch_execute(&statement)
            .await
            .with_context(|| format!("cannot create the sink table: {statement}"))?;
        let name = self.table.trim_matches('"').replace("\"\"", "\"");
        self.columns = self.table_columns(&name).await?;
        tracing::info!(table = %name, "created the sink table");
        Ok(())
    }
}
