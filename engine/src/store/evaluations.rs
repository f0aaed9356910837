//! Evaluations: a checkpoint (or a model) answering a built-in task's or a dataset file's
//! problems greedily, with its accuracy and every answer, for comparing checkpoints.
//!
//! One `evaluations` row per evaluation, one `evaluation_items` row per problem; the items'
//! token columns are encoded as the traces' are (`store/token_columns.rs`, without the loss
//! mask, which an evaluation has no use for).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::token_columns::TokenColumns;
use super::{CheckpointId, RunId, StoreError, TraceToken, Workspace};

pub type EvaluationId = i64;

/// What was evaluated, on what, and how well it did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvaluationSummary {
    /// The checkpoint evaluated; `None` for a model opened from its path (or `builtin:NAME`).
    pub checkpoint_id: Option<CheckpointId>,
    /// The checkpoint's run.
    pub run_id: Option<RunId>,
    /// The checkpoint's step.
    pub step: Option<u64>,
    /// The model: the run's base model for a checkpoint, else the model as given.
    pub model: String,
    /// Where the problems came from: `builtin:TASK` or the dataset file's path.
    pub source: String,
    /// Difficulty of a built-in task's problems; `None` for a file.
    pub difficulty: Option<u8>,
    /// The seed a built-in task's problems were drawn with; `None` for a file.
    pub seed: Option<u64>,
    /// Problems answered.
    pub count: usize,
    /// Prompts went through the model's chat template.
    pub chat: bool,
    /// Tokens generated per answer at most.
    pub max_new_tokens: usize,
    /// Share of the problems answered correctly.
    pub accuracy: f64,
}

/// A stored evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvaluationRecord {
    pub id: EvaluationId,
    #[serde(flatten)]
    pub summary: EvaluationSummary,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// One problem of an evaluation and the model's greedy answer to it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationItem {
    /// Position among the evaluation's problems (0-based).
    pub index: usize,
    pub prompt: String,
    /// The reference answer, where the source has one.
    pub answer: Option<String>,
    pub completion: String,
    pub correct: bool,
    /// `eos` or `length`.
    pub finish_reason: String,
    /// The completion's tokens with their statistics (`counted`, `trained` are false).
    pub tokens: Vec<TraceToken>,
}

const EVALUATION_COLUMNS: &str = "id, checkpoint_id, run_id, step, model, source, difficulty, \
     seed, count, chat, max_new_tokens, accuracy, created_at";

/// An `evaluations` row as SQLite returns it, in [`EVALUATION_COLUMNS`] order.
struct RawEvaluation {
    id: EvaluationId,
    checkpoint_id: Option<CheckpointId>,
    run_id: Option<RunId>,
    step: Option<i64>,
    model: String,
    source: String,
    difficulty: Option<i64>,
    seed: Option<i64>,
    count: i64,
    chat: bool,
    max_new_tokens: i64,
    accuracy: f64,
    created_at: String,
}

impl RawEvaluation {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            checkpoint_id: row.get(1)?,
            run_id: row.get(2)?,
            step: row.get(3)?,
            model: row.get(4)?,
            source: row.get(5)?,
            difficulty: row.get(6)?,
            seed: row.get(7)?,
            count: row.get(8)?,
            chat: row.get(9)?,
            max_new_tokens: row.get(10)?,
            accuracy: row.get(11)?,
            created_at: row.get(12)?,
        })
    }
}

/// A `u64` seed kept in SQLite's signed integer by its bits.
fn seed_to_sql(seed: u64) -> i64 {
    i64::from_ne_bytes(seed.to_ne_bytes())
}

fn seed_from_sql(seed: i64) -> u64 {
    u64::from_ne_bytes(seed.to_ne_bytes())
}

impl Workspace {
    /// Stores an evaluation and its items in one transaction; returns its id.
    pub fn add_evaluation(
        &self,
        summary: &EvaluationSummary,
        items: &[EvaluationItem],
    ) -> Result<EvaluationId, StoreError> {
        let step = summary.step.map(|s| self.step_to_sql(s)).transpose()?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err("begin a write transaction"))?;
        if let Some(run) = summary.run_id {
            self.ensure_run(&tx, run)?;
        }
        if let Some(id) = summary.checkpoint_id {
            let found = tx
                .prepare_cached("SELECT 1 FROM checkpoints WHERE id = ?1")
                .and_then(|mut stmt| stmt.exists([id]))
                .map_err(self.sql_err("look up a checkpoint"))?;
            if !found {
                return Err(StoreError::CheckpointNotFound {
                    path: self.db_path.clone(),
                    id,
                });
            }
        }
        let id: EvaluationId = tx
            .prepare_cached(
                "INSERT INTO evaluations (checkpoint_id, run_id, step, model, source, difficulty,
                    seed, count, chat, max_new_tokens, accuracy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![
                        summary.checkpoint_id,
                        summary.run_id,
                        step,
                        summary.model,
                        summary.source,
                        summary.difficulty,
                        summary.seed.map(seed_to_sql),
                        summary.count as i64,
                        summary.chat,
                        summary.max_new_tokens as i64,
                        summary.accuracy,
                    ],
                    |row| row.get(0),
                )
            })
            .map_err(self.sql_err("add an evaluation"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO evaluation_items (evaluation_id, item_index, prompt, answer,
                        completion, correct, finish_reason, token_ids, logprobs, entropies, top_k,
                        top)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(self.sql_err("prepare to store evaluation items"))?;
            for item in items {
                let columns = TokenColumns::encode(&item.tokens);
                stmt.execute(params![
                    id,
                    item.index as i64,
                    item.prompt,
                    item.answer,
                    item.completion,
                    item.correct,
                    item.finish_reason,
                    columns.ids,
                    columns.logprobs,
                    columns.entropies,
                    columns.top_k,
                    columns.top,
                ])
                .map_err(self.sql_err("store an evaluation item"))?;
            }
        }
        tx.commit().map_err(self.sql_err("commit an evaluation"))?;
        Ok(id)
    }

    /// Stored evaluations, oldest first: every one, or those of `checkpoint`.
    pub fn evaluations(
        &self,
        checkpoint: Option<CheckpointId>,
    ) -> Result<Vec<EvaluationRecord>, StoreError> {
        let rows = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations
                 WHERE ?1 IS NULL OR checkpoint_id = ?1 ORDER BY id"
            ))
            .and_then(|mut stmt| {
                stmt.query_map([checkpoint], RawEvaluation::from_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("list evaluations"))?;
        rows.into_iter()
            .map(|raw| self.evaluation_record(raw))
            .collect()
    }

    /// One evaluation with its items, by index.
    pub fn evaluation(
        &self,
        id: EvaluationId,
    ) -> Result<(EvaluationRecord, Vec<EvaluationItem>), StoreError> {
        let conn = self.conn();
        let raw = conn
            .prepare_cached(&format!(
                "SELECT {EVALUATION_COLUMNS} FROM evaluations WHERE id = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([id], RawEvaluation::from_row).optional())
            .map_err(self.sql_err("read an evaluation"))?
            .ok_or_else(|| StoreError::EvaluationNotFound {
                path: self.db_path.clone(),
                id,
            })?;
        let raw_items = conn
            .prepare_cached(
                "SELECT item_index, prompt, answer, completion, correct, finish_reason, token_ids,
                        logprobs, entropies, top_k, top
                 FROM evaluation_items WHERE evaluation_id = ?1 ORDER BY item_index",
            )
            .and_then(|mut stmt| {
                stmt.query_map([id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, bool>(4)?,
                        r.get::<_, String>(5)?,
                        TokenColumns {
                            ids: r.get(6)?,
                            logprobs: r.get(7)?,
                            entropies: r.get(8)?,
                            top_k: r.get(9)?,
                            top: r.get(10)?,
                            loss_mask: Vec::new(),
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("read an evaluation's items"))?;
        drop(conn);
        let items = raw_items
            .into_iter()
            .map(
                |(index, prompt, answer, completion, correct, finish_reason, columns)| {
                    let bad =
                        |what: &str| self.invalid(format!("evaluation {id}, item {index}: {what}"));
                    Ok(EvaluationItem {
                        index: usize::try_from(index).map_err(|_| bad("negative index"))?,
                        prompt,
                        answer,
                        completion,
                        correct,
                        finish_reason,
                        tokens: columns.decode().map_err(bad)?,
                    })
                },
            )
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((self.evaluation_record(raw)?, items))
    }

    fn evaluation_record(&self, raw: RawEvaluation) -> Result<EvaluationRecord, StoreError> {
        let bad = |what: &str| self.invalid(format!("evaluation {}: {what}", raw.id));
        Ok(EvaluationRecord {
            id: raw.id,
            summary: EvaluationSummary {
                checkpoint_id: raw.checkpoint_id,
                run_id: raw.run_id,
                step: raw.step.map(|s| self.step_from_sql(s)).transpose()?,
                model: raw.model,
                source: raw.source,
                difficulty: raw
                    .difficulty
                    .map(|d| u8::try_from(d).map_err(|_| bad("difficulty out of range")))
                    .transpose()?,
                seed: raw.seed.map(seed_from_sql),
                count: usize::try_from(raw.count).map_err(|_| bad("negative count"))?,
                chat: raw.chat,
                max_new_tokens: usize::try_from(raw.max_new_tokens)
                    .map_err(|_| bad("negative max_new_tokens"))?,
                accuracy: raw.accuracy,
            },
            created_at: raw.created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_workspace as open_temp;
    use super::*;

    fn item(index: usize, correct: bool) -> EvaluationItem {
        EvaluationItem {
            index,
            prompt: format!("({index}+2)*3="),
            answer: (index != 1).then(|| ((index + 2) * 3).to_string()),
            completion: format!("<answer>{}</answer> é", index * 7),
            correct,
            finish_reason: if index == 2 { "length" } else { "eos" }.into(),
            tokens: (0..4u32)
                .map(|i| TraceToken {
                    id: 40 + i,
                    logprob: -0.5 * i as f32,
                    entropy: 0.25 + i as f32,
                    top: (0..3).map(|j| (i + j, -(j as f32) - 0.5)).collect(),
                    counted: false,
                    trained: false,
                })
                .collect(),
        }
    }

    #[test]
    fn an_evaluation_reads_back_equal() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("r", "").expect("run");
        let dir = ws.run_artifacts_dir(run).join("checkpoint-000004");
        let checkpoint = ws.add_checkpoint(run, 4, &dir, "full").expect("checkpoint");
        let summary = EvaluationSummary {
            checkpoint_id: Some(checkpoint),
            run_id: Some(run),
            step: Some(4),
            model: "builtin:tiny-reasoner".into(),
            source: "builtin:arithmetic".into(),
            difficulty: Some(1),
            // A seed above i64::MAX survives the signed column.
            seed: Some(u64::MAX - 6),
            count: 3,
            chat: false,
            max_new_tokens: 96,
            accuracy: 2.0 / 3.0,
        };
        let items = vec![item(0, true), item(1, false), item(2, true)];
        let id = ws.add_evaluation(&summary, &items).expect("store");
        let other = EvaluationSummary {
            checkpoint_id: None,
            run_id: None,
            step: None,
            model: "/models/m.gguf".into(),
            source: "/data/q.jsonl".into(),
            difficulty: None,
            seed: None,
            count: 0,
            chat: true,
            max_new_tokens: 16,
            accuracy: 0.0,
        };
        let other_id = ws.add_evaluation(&other, &[]).expect("store");

        let (record, read_items) = ws.evaluation(id).expect("read");
        assert_eq!(record.id, id);
        assert_eq!(record.summary, summary);
        assert_eq!(read_items, items);
        assert!(record.created_at.ends_with('Z'), "{}", record.created_at);

        let all = ws.evaluations(None).expect("list");
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [id, other_id]);
        assert_eq!(all[1].summary, other);
        let of_checkpoint = ws.evaluations(Some(checkpoint)).expect("list");
        assert_eq!(of_checkpoint.len(), 1);
        assert_eq!(of_checkpoint[0].id, id);

        assert!(matches!(
            ws.evaluation(other_id + 1),
            Err(StoreError::EvaluationNotFound { .. })
        ));
        let missing = EvaluationSummary {
            checkpoint_id: Some(checkpoint + 10),
            ..summary
        };
        assert!(matches!(
            ws.add_evaluation(&missing, &items),
            Err(StoreError::CheckpointNotFound { .. })
        ));
        // Nothing of the failed write was kept.
        assert_eq!(ws.evaluations(None).expect("list").len(), 2);
    }
}
