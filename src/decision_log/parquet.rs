//! `handoff export --format parquet`: the decision log as one Parquet table for the engines
//! analysts already run (DuckDB, Spark, Trino). One row per decision, its feedback joined in; every
//! signal the policy reads is a column named as in policy rules, so a rule's condition is a `WHERE`
//! clause. Written as the log streams, in row groups, so memory stays flat however long the log.
//!
//! Columns (the README's "Decision log in Parquet" repeats this):
//! - `decision_id`, `ts` (timestamp, ms, UTC), `tenant` (null: a server without tenants),
//!   `conversation` (salted hash), `action`, `rule`, `queue` (null: none), `priority`,
//!   `fallback` (null: none), `degraded`, `model`, `model_version`, `policy_version`,
//!   `reasons` (JSON array of {rule_id, signal, value, threshold});
//! - one column per signal (`handoff signals`): numbers DOUBLE, counts BIGINT, flags BOOLEAN,
//!   words VARCHAR;
//! - feedback, null without it: `human_needed` (needed, not_needed, needed_earlier),
//!   `resolved_by` (bot, human, abandoned), `csat` (1–5), `wait_seconds`.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::entry::{LoggedDecision, Verdict};
use super::reader::{LogReadError, LogStream, Unreadable};
use crate::policy::catalog::{Kind, Signal, Value};

/// Rows per record batch handed to the writer, and per row group in the file: small enough that the
/// writer's buffers stay at tens of MB, large enough for good compression.
const BATCH_ROWS: usize = 8192;
const ROW_GROUP_ROWS: usize = 131_072;

#[derive(Debug, thiserror::Error)]
pub enum ParquetExportError {
    #[error(transparent)]
    Read(#[from] LogReadError),
    #[error("writing {0}")]
    Io(std::path::PathBuf, #[source] std::io::Error),
    #[error("encoding Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("building a batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// What an export wrote.
#[derive(Debug, Default)]
pub struct ParquetSummary {
    pub rows: usize,
    pub with_feedback: usize,
    pub unreadable: Unreadable,
}

/// One column's values for the batch being built.
enum Column {
    Text(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Flag(BooleanBuilder),
    Time(TimestampMillisecondBuilder),
}

/// What a fixed column holds.
#[derive(Clone, Copy)]
enum Shape {
    Text,
    Int,
    Flag,
    Time,
}

impl Column {
    fn new(shape: Shape) -> Column {
        match shape {
            Shape::Text => Column::Text(StringBuilder::new()),
            Shape::Int => Column::Int(Int64Builder::new()),
            Shape::Flag => Column::Flag(BooleanBuilder::new()),
            Shape::Time => Column::Time(TimestampMillisecondBuilder::new()),
        }
    }

    fn of(kind: Kind) -> Column {
        match kind {
            Kind::Number { .. } => Column::Float(Float64Builder::new()),
            Kind::Count => Column::Int(Int64Builder::new()),
            Kind::Flag => Column::Flag(BooleanBuilder::new()),
            Kind::Text => Column::Text(StringBuilder::new()),
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Column::Text(_) => DataType::Utf8,
            Column::Int(_) => DataType::Int64,
            Column::Float(_) => DataType::Float64,
            Column::Flag(_) => DataType::Boolean,
            Column::Time(_) => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }

    fn text(&mut self, v: Option<&str>) {
        if let Column::Text(b) = self {
            b.append_option(v);
        }
    }

    fn int(&mut self, v: Option<i64>) {
        if let Column::Int(b) = self {
            b.append_option(v);
        }
    }

    fn flag(&mut self, v: Option<bool>) {
        if let Column::Flag(b) = self {
            b.append_option(v);
        }
    }

    fn signal(&mut self, v: Value<'_>) {
        match (self, v) {
            (Column::Float(b), Value::Number(x)) => b.append_value(x),
            (Column::Int(b), Value::Number(x)) => b.append_value(x as i64),
            (Column::Flag(b), Value::Number(x)) => b.append_value(x != 0.0),
            (Column::Text(b), Value::Text(t)) => b.append_value(t),
            (c, _) => c.null(),
        }
    }

    fn null(&mut self) {
        match self {
            Column::Text(b) => b.append_null(),
            Column::Int(b) => b.append_null(),
            Column::Float(b) => b.append_null(),
            Column::Flag(b) => b.append_null(),
            Column::Time(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Text(b) => Arc::new(b.finish()),
            Column::Int(b) => Arc::new(b.finish()),
            Column::Float(b) => Arc::new(b.finish()),
            Column::Flag(b) => Arc::new(b.finish()),
            Column::Time(b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }

    fn len(&self) -> usize {
        match self {
            Column::Text(b) => b.len(),
            Column::Int(b) => b.len(),
            Column::Float(b) => b.len(),
            Column::Flag(b) => b.len(),
            Column::Time(b) => b.len(),
        }
    }
}

/// The decision columns, in file order, before the signals.
const DECISION_COLUMNS: [(&str, Shape); 14] = [
    ("decision_id", Shape::Text),
    ("ts", Shape::Time),
    ("tenant", Shape::Text),
    ("conversation", Shape::Text),
    ("action", Shape::Text),
    ("rule", Shape::Text),
    ("queue", Shape::Text),
    ("priority", Shape::Int),
    ("fallback", Shape::Text),
    ("degraded", Shape::Flag),
    ("model", Shape::Text),
    ("model_version", Shape::Text),
    ("policy_version", Shape::Text),
    ("reasons", Shape::Text),
];

/// The feedback columns, after the signals.
const FEEDBACK_COLUMNS: [(&str, Shape); 4] = [
    ("human_needed", Shape::Text),
    ("resolved_by", Shape::Text),
    ("csat", Shape::Int),
    ("wait_seconds", Shape::Int),
];

/// Every column's name and builder, in file order.
fn columns() -> Vec<(&'static str, Column)> {
    let mut cols: Vec<_> = DECISION_COLUMNS
        .iter()
        .map(|(n, shape)| (*n, Column::new(*shape)))
        .collect();
    cols.extend(Signal::ALL.iter().map(|s| (s.name(), Column::of(s.kind()))));
    cols.extend(
        FEEDBACK_COLUMNS
            .iter()
            .map(|(n, shape)| (*n, Column::new(*shape))),
    );
    cols
}

fn schema(cols: &[(&str, Column)]) -> Arc<Schema> {
    Arc::new(Schema::new(
        cols.iter()
            .map(|(name, c)| Field::new(*name, c.data_type(), true))
            .collect::<Vec<_>>(),
    ))
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Append one decision (and its feedback) as a row.
fn append(cols: &mut [(&str, Column)], d: &LoggedDecision, f: Option<Verdict>) {
    let mut c = cols.iter_mut().map(|(_, c)| c);
    let mut next = || c.next().expect("a column per value");
    next().text(Some(&d.decision_id));
    if let Column::Time(b) = next() {
        b.append_value(d.ts_ms as i64);
    }
    next().text(d.tenant.as_deref());
    next().text(Some(&d.conversation));
    next().text(Some(&d.action));
    next().text(Some(&d.rule));
    next().text(non_empty(&d.queue));
    next().int(Some(d.priority.into()));
    next().text(non_empty(&d.fallback));
    next().flag(Some(d.degraded));
    next().text(Some(&d.model));
    next().text(Some(&d.model_version));
    next().text(Some(&d.policy_version));
    next().text(serde_json::to_string(&d.reasons).ok().as_deref());
    for s in Signal::ALL {
        next().signal(s.read(&d.signals));
    }
    next().text(f.map(|f| f.human_needed.as_str()));
    next().text(f.and_then(|f| f.resolved_by.map(|r| r.as_str())));
    next().int(f.and_then(|f| f.csat.map(i64::from)));
    next().int(f.and_then(|f| f.wait_seconds.map(i64::from)));
}

/// Write `log` to `out` as Parquet (Snappy-compressed).
pub fn export_parquet(log: LogStream, out: &Path) -> Result<ParquetSummary, ParquetExportError> {
    let io = |e| ParquetExportError::Io(out.to_path_buf(), e);
    let file = std::fs::File::create(out).map_err(io)?;
    let mut cols = columns();
    let schema = schema(&cols);
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut summary = ParquetSummary::default();
    let flush = |cols: &mut [(&str, Column)], writer: &mut ArrowWriter<std::fs::File>| {
        let arrays: Vec<ArrayRef> = cols.iter_mut().map(|(_, c)| c.finish()).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays)?;
        writer.write(&batch)?;
        Ok::<_, ParquetExportError>(())
    };
    summary.unreadable = log.for_each(|d, feedback| {
        summary.rows += 1;
        summary.with_feedback += usize::from(feedback.is_some());
        append(&mut cols, d, feedback);
        if cols[0].1.len() == BATCH_ROWS {
            flush(&mut cols, &mut writer)?;
        }
        Ok::<_, ParquetExportError>(())
    })?;
    if cols[0].1.len() > 0 {
        flush(&mut cols, &mut writer)?;
    }
    writer.close()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_signal_is_named_like_a_decision_or_feedback_column() {
        let cols = columns();
        let mut names: Vec<_> = cols.iter().map(|(n, _)| *n).collect();
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all, "a column name is used twice");
    }
}
