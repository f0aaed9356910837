//! Traces: every completion an RL run sampled (and every eval generation), with the statistics
//! of each of its tokens, so a curve's spike can be followed to the rollouts behind it.
//!
//! One row per completion. The token columns are little-endian binary (see
//! `store/token_columns.rs`): about 9 + 8k + 1 bytes per token before SQLite's overhead.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde_json::{Map, Value};

use super::token_columns::TokenColumns;
use super::{RunId, StoreError, Workspace};

/// Whether a trace is a training rollout or an eval generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceKind {
    Rollout,
    Eval,
}

impl TraceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rollout => "rollout",
            Self::Eval => "eval",
        }
    }
}

/// One token of a completion.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceToken {
    pub id: u32,
    /// Log-probability under the sampling policy (before temperature and filtering).
    pub logprob: f32,
    /// Entropy of that distribution, nats.
    pub entropy: f32,
    /// The most likely alternatives, `(id, logprob)`.
    pub top: Vec<(u32, f32)>,
    /// The loss counted this token.
    pub counted: bool,
    /// The token got gradient (inside the top-entropy share).
    pub trained: bool,
}

/// One completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub step: u64,
    pub kind: TraceKind,
    pub prompt_index: usize,
    pub sample_index: usize,
    pub prompt: String,
    pub completion: String,
    pub tokens: Vec<TraceToken>,
    pub reward: f64,
    /// Each reward part by name, in the run's order.
    pub rewards: Vec<(String, f64)>,
    pub advantage: f64,
    pub correct: Option<bool>,
    pub finish_reason: String,
}

/// One completion of a prompt, summarised ([`Workspace::prompt_history`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PromptPoint {
    pub step: u64,
    pub sample_index: usize,
    pub reward: f64,
    /// Mean entropy of its tokens, nats (NaN without tokens).
    pub mean_entropy: f64,
    pub tokens: usize,
    pub correct: Option<bool>,
}

/// A `traces` row as SQLite returns it, in `SELECT` order.
type RawTrace = (
    i64,
    i64,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    i64,
    Vec<u8>,
    Vec<u8>,
    Option<f64>,
    String,
    Option<f64>,
    Option<bool>,
    String,
);

impl Workspace {
    /// Stores `traces` of run `run` in one transaction; a trace already stored under the same
    /// (step, kind, prompt, sample) is replaced, so a resumed step never duplicates one.
    pub fn add_traces(&self, run: RunId, traces: &[Trace]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err("begin a write transaction"))?;
        self.ensure_run(&tx, run)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO traces (run_id, step, kind, prompt_index, sample_index,
                        prompt, completion, token_ids, logprobs, entropies, top_k, top, loss_mask,
                        reward, rewards_json, advantage, correct, finish_reason)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                        ?17, ?18)",
                )
                .map_err(self.sql_err("prepare to store traces"))?;
            for t in traces {
                let columns = TokenColumns::encode(&t.tokens);
                let rewards: Map<String, Value> = t
                    .rewards
                    .iter()
                    .map(|(n, v)| (n.clone(), Value::from(*v)))
                    .collect();
                stmt.execute(params![
                    run,
                    self.step_to_sql(t.step)?,
                    t.kind.as_str(),
                    t.prompt_index as i64,
                    t.sample_index as i64,
                    t.prompt,
                    t.completion,
                    columns.ids,
                    columns.logprobs,
                    columns.entropies,
                    columns.top_k,
                    columns.top,
                    columns.loss_mask,
                    t.reward,
                    Value::Object(rewards).to_string(),
                    t.advantage,
                    t.correct,
                    t.finish_reason,
                ])
                .map_err(self.sql_err("store a trace"))?;
            }
        }
        tx.commit().map_err(self.sql_err("commit traces"))
    }

    /// The steps of run `run` with traces of `kind`, and how many each has, in step order.
    pub fn trace_steps(
        &self,
        run: RunId,
        kind: TraceKind,
    ) -> Result<Vec<(u64, usize)>, StoreError> {
        let rows = self
            .conn()
            .prepare_cached(
                "SELECT step, COUNT(*) FROM traces WHERE run_id = ?1 AND kind = ?2
                 GROUP BY step ORDER BY step",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![run, kind.as_str()], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("list a run's trace steps"))?;
        rows.into_iter()
            .map(|(step, n)| Ok((self.step_from_sql(step)?, n.max(0) as usize)))
            .collect()
    }

    /// The traces of `kind` at `step` of run `run`, by prompt and sample.
    pub fn traces(&self, run: RunId, step: u64, kind: TraceKind) -> Result<Vec<Trace>, StoreError> {
        let step_sql = self.step_to_sql(step)?;
        let raws: Vec<RawTrace> = self
            .conn()
            .prepare_cached(
                "SELECT prompt_index, sample_index, prompt, completion, token_ids, logprobs,
                        entropies, top_k, top, loss_mask, reward, rewards_json, advantage, correct,
                        finish_reason
                 FROM traces WHERE run_id = ?1 AND step = ?2 AND kind = ?3
                 ORDER BY prompt_index, sample_index",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![run, step_sql, kind.as_str()], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                        r.get(12)?,
                        r.get(13)?,
                        r.get(14)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("read a step's traces"))?;
        raws.into_iter()
            .map(|raw| self.trace_from_raw(step, kind, raw))
            .collect()
    }

    /// Drops the traces of run `run` after `step` (a resume recomputes them).
    pub fn truncate_traces_after(&self, run: RunId, step: u64) -> Result<usize, StoreError> {
        let step = self.step_to_sql(step)?;
        self.conn()
            .prepare_cached("DELETE FROM traces WHERE run_id = ?1 AND step > ?2")
            .and_then(|mut stmt| stmt.execute(params![run, step]))
            .map_err(self.sql_err("drop later traces"))
    }

    /// Thins run `run`'s rollout traces: of the steps before `before_step`, keeps only those
    /// that are multiples of `keep_every` (a retention setting for long runs).
    pub fn thin_traces(
        &self,
        run: RunId,
        before_step: u64,
        keep_every: u64,
    ) -> Result<usize, StoreError> {
        let before = self.step_to_sql(before_step)?;
        let every = self.step_to_sql(keep_every.max(1))?;
        self.conn()
            .prepare_cached(
                "DELETE FROM traces WHERE run_id = ?1 AND kind = 'rollout' AND step < ?2
                 AND step % ?3 != 0",
            )
            .and_then(|mut stmt| stmt.execute(params![run, before, every]))
            .map_err(self.sql_err("thin old traces"))
    }

    /// Bytes the traces of run `run` take in their blob and text columns.
    pub fn trace_bytes(&self, run: RunId) -> Result<u64, StoreError> {
        let bytes: Option<i64> = self
            .conn()
            .prepare_cached(
                "SELECT SUM(length(token_ids) + length(logprobs) + length(entropies) + length(top)
                            + length(loss_mask) + length(prompt) + length(completion)
                            + length(rewards_json))
                 FROM traces WHERE run_id = ?1",
            )
            .and_then(|mut stmt| stmt.query_row([run], |row| row.get(0)).optional())
            .map_err(self.sql_err("measure traces"))?
            .flatten();
        Ok(bytes.unwrap_or(0).max(0) as u64)
    }

    /// Every completion of run `run` (of `kind`) whose prompt is `prompt`, in step order: the
    /// Traces view's "this prompt over training" (evaluation answers see the same prompts at
    /// every evaluation; rollouts see a prompt again when the data comes round).
    pub fn prompt_history(
        &self,
        run: RunId,
        kind: TraceKind,
        prompt: &str,
    ) -> Result<Vec<PromptPoint>, StoreError> {
        type Row = (i64, i64, Vec<u8>, Option<f64>, Option<bool>);
        let rows: Vec<Row> = self
            .conn()
            .prepare_cached(
                "SELECT step, sample_index, entropies, reward, correct FROM traces
                 WHERE run_id = ?1 AND kind = ?2 AND prompt = ?3
                 ORDER BY step, sample_index",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![run, kind.as_str(), prompt], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("read a prompt's traces"))?;
        rows.into_iter()
            .map(|(step, sample, entropies, reward, correct)| {
                let step = self.step_from_sql(step)?;
                if entropies.len() % 4 != 0 {
                    return Err(self.invalid(format!(
                        "trace at step {step}: entropy column of {} bytes",
                        entropies.len()
                    )));
                }
                let tokens = entropies.len() / 4;
                let sum: f64 = entropies
                    .chunks_exact(4)
                    .map(|w| f64::from(f32::from_le_bytes([w[0], w[1], w[2], w[3]])))
                    .sum();
                Ok(PromptPoint {
                    step,
                    sample_index: sample.max(0) as usize,
                    reward: reward.unwrap_or(f64::NAN),
                    mean_entropy: if tokens == 0 {
                        f64::NAN
                    } else {
                        sum / tokens as f64
                    },
                    tokens,
                    correct,
                })
            })
            .collect()
    }

    fn trace_from_raw(
        &self,
        step: u64,
        kind: TraceKind,
        (
            prompt_index,
            sample_index,
            prompt,
            completion,
            ids,
            logprobs,
            entropies,
            k,
            top,
            mask,
            reward,
            rewards_json,
            advantage,
            correct,
            finish_reason,
        ): RawTrace,
    ) -> Result<Trace, StoreError> {
        let bad = |what: &str| self.invalid(format!("trace at step {step}: {what}"));
        let tokens = TokenColumns {
            ids,
            logprobs,
            entropies,
            top_k: k,
            top,
            loss_mask: mask,
        }
        .decode()
        .map_err(bad)?;
        let rewards = match serde_json::from_str::<Value>(&rewards_json) {
            Ok(Value::Object(m)) => m
                .into_iter()
                .map(|(name, v)| (name, v.as_f64().unwrap_or(f64::NAN)))
                .collect(),
            _ => return Err(bad("rewards_json is not an object")),
        };
        Ok(Trace {
            step,
            kind,
            prompt_index: usize::try_from(prompt_index).map_err(|_| bad("prompt index"))?,
            sample_index: usize::try_from(sample_index).map_err(|_| bad("sample index"))?,
            prompt,
            completion,
            tokens,
            reward: reward.unwrap_or(f64::NAN),
            rewards,
            advantage: advantage.unwrap_or(f64::NAN),
            correct,
            finish_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_workspace as open_temp;
    use super::*;

    fn trace(step: u64, prompt_index: usize, sample_index: usize) -> Trace {
        let tokens = (0..7u32)
            .map(|i| TraceToken {
                id: 100 + i,
                logprob: -0.25 * i as f32,
                entropy: 0.5 + i as f32,
                top: (0..5).map(|j| (i * 10 + j, -(j as f32) - 0.125)).collect(),
                counted: i != 6,
                trained: i % 2 == 0,
            })
            .collect();
        Trace {
            step,
            kind: TraceKind::Rollout,
            prompt_index,
            sample_index,
            prompt: "(1+2)*3=".into(),
            completion: "1+2=3. 3*3=9. <answer>9</answer> é".into(),
            tokens,
            reward: 1.5,
            rewards: vec![("accuracy".into(), 1.0), ("format".into(), 1.0)],
            advantage: -0.75,
            correct: Some(true),
            finish_reason: "eos".into(),
        }
    }

    #[test]
    fn a_trace_reads_back_token_for_token() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("r", "").expect("run");
        let written = vec![
            trace(3, 0, 0),
            trace(3, 0, 1),
            trace(3, 1, 0),
            trace(4, 0, 0),
        ];
        ws.add_traces(run, &written).expect("store");
        let back = ws.traces(run, 3, TraceKind::Rollout).expect("read");
        assert_eq!(back, written[..3]);
        assert_eq!(
            ws.trace_steps(run, TraceKind::Rollout).expect("steps"),
            [(3, 3), (4, 1)]
        );
        assert!(ws.traces(run, 3, TraceKind::Eval).expect("read").is_empty());
        // Storing a step again replaces it; a resume drops what came after its checkpoint.
        ws.add_traces(run, &written[..1]).expect("again");
        assert_eq!(
            ws.traces(run, 3, TraceKind::Rollout).expect("read").len(),
            3
        );
        assert_eq!(ws.truncate_traces_after(run, 3).expect("truncate"), 1);
        assert_eq!(
            ws.trace_steps(run, TraceKind::Rollout).expect("steps"),
            [(3, 3)]
        );
        assert!(ws.trace_bytes(run).expect("bytes") > 3 * 7 * 49);
    }

    #[test]
    fn a_prompts_history_lists_its_completions_over_steps() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("r", "").expect("run");
        let mut other = trace(5, 1, 0);
        other.prompt = "2+2=".into();
        let mut wrong = trace(7, 0, 1);
        wrong.correct = Some(false);
        wrong.reward = 0.25;
        ws.add_traces(run, &[trace(5, 0, 0), other, trace(7, 0, 0), wrong])
            .expect("store");
        let history = ws
            .prompt_history(run, TraceKind::Rollout, "(1+2)*3=")
            .expect("history");
        let seen: Vec<(u64, usize, f64, Option<bool>)> = history
            .iter()
            .map(|p| (p.step, p.sample_index, p.reward, p.correct))
            .collect();
        assert_eq!(
            seen,
            [
                (5, 0, 1.5, Some(true)),
                (7, 0, 1.5, Some(true)),
                (7, 1, 0.25, Some(false))
            ]
        );
        // Entropies 0.5, 1.5, …, 6.5: their mean, by hand.
        assert!((history[0].mean_entropy - 3.5).abs() < 1e-9);
        assert_eq!(history[0].tokens, 7);
        assert!(
            ws.prompt_history(run, TraceKind::Eval, "(1+2)*3=")
                .expect("eval")
                .is_empty()
        );
    }

    #[test]
    fn thinning_keeps_every_nth_old_step() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("r", "").expect("run");
        let all: Vec<Trace> = (1..=10).map(|s| trace(s, 0, 0)).collect();
        ws.add_traces(run, &all).expect("store");
        ws.thin_traces(run, 8, 3).expect("thin");
        let steps: Vec<u64> = ws
            .trace_steps(run, TraceKind::Rollout)
            .expect("steps")
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(steps, [3, 6, 8, 9, 10]);
    }
}
