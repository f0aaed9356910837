//! Entropy analytics over a run's stored traces, step by step: what the RL-for-reasoning papers
//! read off their runs, computed once here so the window and `studio analyze` show the same
//! numbers.
//!
//! - mean token entropy and the share of tokens above a threshold (entropy collapse);
//! - the forking tokens: at each step the top-ρ share of its tokens by entropy ("Beyond the
//!   80/20 Rule", ρ = 0.2), counted by their text, with the texts that are most often among them;
//! - reflection words ("wait", "let me check", …) per rollout;
//! - completion length of correct and of wrong answers;
//! - the fit of reward against entropy over steps, `R = −a·exp(H) + b` ("The Entropy Mechanism
//!   of Reinforcement Learning for Reasoning Language Models"), by least squares in `exp(H)`.
//!
//! Everything is a pure function of the traces; token texts come from the caller (the run's
//! tokenizer), so this module opens nothing.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use serde::Serialize;

use crate::store::{RunId, StoreError, Trace, TraceKind, Workspace};

/// The reflection words counted by default (case-insensitive, whole words).
pub const REFLECTION_WORDS: [&str; 9] = [
    "wait",
    "let me check",
    "hmm",
    "alternatively",
    "but wait",
    "let me verify",
    "double-check",
    "on second thought",
    "actually",
];

/// What the analysis looks for.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisOptions {
    /// A token is high-entropy above this many nats (default 0.672, the 80th percentile the
    /// forking-token paper reports for its model).
    pub threshold: f32,
    /// The share of each step's tokens, by entropy, that are its forking tokens (default 0.2).
    pub rho: f64,
    /// How many of the most frequent forking-token texts to report (default 20).
    pub top_forking: usize,
    /// The phrases counted as reflection, matched case-insensitively on word boundaries.
    pub reflection_words: Vec<String>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            threshold: 0.672,
            rho: 0.2,
            top_forking: 20,
            reflection_words: REFLECTION_WORDS.iter().map(|w| w.to_string()).collect(),
        }
    }
}

/// One step's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepAnalysis {
    pub step: u64,
    pub rollouts: usize,
    /// Completion tokens of the step.
    pub tokens: usize,
    /// Mean entropy over the step's tokens, nats.
    pub mean_entropy: f64,
    /// Share of the step's tokens above the threshold.
    pub high_entropy_share: f64,
    /// The entropy at which the step's forking tokens start (its (1 − ρ) quantile).
    pub forking_threshold: f64,
    pub mean_reward: f64,
    /// Share of correct answers among the rollouts that have a verdict.
    pub accuracy: Option<f64>,
    /// Mean completion length in tokens of correct answers, and of wrong ones.
    pub mean_length_correct: Option<f64>,
    pub mean_length_wrong: Option<f64>,
    /// Each reflection phrase's occurrences in the step's completions, in the options' order.
    pub reflection: Vec<usize>,
    /// All reflection occurrences per rollout.
    pub reflection_per_rollout: f64,
}

/// A token text that is often a forking token, with its count at each analysed step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForkingToken {
    pub text: String,
    pub total: usize,
    /// Counts in the order of [`RunAnalysis::steps`].
    pub per_step: Vec<usize>,
}

/// `R = −a·exp(H) + b` fitted over the steps' (mean entropy, mean reward).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EntropyFit {
    pub a: f64,
    pub b: f64,
    /// Coefficient of determination of the fit.
    pub r2: f64,
    pub points: usize,
}

/// The analysis of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunAnalysis {
    pub steps: Vec<StepAnalysis>,
    pub reflection_words: Vec<String>,
    pub forking_tokens: Vec<ForkingToken>,
    /// `None` with fewer than three steps or when the entropy does not vary.
    pub fit: Option<EntropyFit>,
}

/// The `k` largest of `values` are those at or above the returned value, with `k` = ⌈ρ·n⌉
/// (at least one); ties at the boundary are broken by position, so exactly `k` are chosen.
/// Returns the chosen indices, sorted.
pub fn top_share(values: &[f32], rho: f64) -> Vec<usize> {
    if values.is_empty() {
        return Vec::new();
    }
    let k = ((rho * values.len() as f64).ceil() as usize).clamp(1, values.len());
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    let mut chosen = order[..k].to_vec();
    chosen.sort_unstable();
    chosen
}

/// The forking tokens of one text under several models, and how far they agree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForkingOverlap {
    /// Per model: the positions of its top-ρ tokens by entropy, sorted.
    pub positions: Vec<Vec<usize>>,
    /// Per model: the share of the first model's forking positions that are also its own
    /// (1 for the first model; `None` when the first has none).
    pub shared_with_first: Vec<Option<f64>>,
}

/// Each model's top-ρ positions by entropy ([`top_share`]) over one text, `entropies[m][i]` the
/// entropy model `m` predicted token `i` with (all the same length), and the share of the first
/// model's positions each other model shares.
pub fn forking_overlap(entropies: &[Vec<f32>], rho: f64) -> ForkingOverlap {
    let positions: Vec<Vec<usize>> = entropies.iter().map(|e| top_share(e, rho)).collect();
    let first = positions.first().cloned().unwrap_or_default();
    let shared_with_first = positions
        .iter()
        .map(|p| {
            (!first.is_empty()).then(|| {
                let common = first.iter().filter(|i| p.binary_search(i).is_ok()).count();
                common as f64 / first.len() as f64
            })
        })
        .collect();
    ForkingOverlap {
        positions,
        shared_with_first,
    }
}

/// Occurrences of `phrase` in `text`, case-insensitive, on word boundaries (so "wait" does not
/// count inside "awaited").
pub fn count_phrase(text: &str, phrase: &str) -> usize {
    phrase_matches(text, phrase).len()
}

/// Where `phrase` occurs in `text` as [`count_phrase`] counts it: byte ranges of `text`, in
/// order (the Traces view marks the tokens under them).
pub fn phrase_matches(text: &str, phrase: &str) -> Vec<Range<usize>> {
    Lowered::new(text).matches(phrase)
}

/// A text lower-cased once, for matching several phrases in it.
struct Lowered<'a> {
    text: &'a str,
    lower: String,
    /// For each byte of `lower`, where its character starts in `text` (and `text.len()`).
    origin: Vec<usize>,
}

impl<'a> Lowered<'a> {
    fn new(text: &'a str) -> Self {
        // Lower-casing can change a character's length, so keep where each lowered byte
        // came from.
        let mut lower = String::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len() + 1);
        for (at, c) in text.char_indices() {
            for l in c.to_lowercase() {
                lower.push(l);
                origin.resize(lower.len(), at);
            }
        }
        origin.push(text.len());
        Self {
            text,
            lower,
            origin,
        }
    }

    /// Byte ranges of `text` where `phrase` occurs, case-insensitive, on word boundaries.
    fn matches(&self, phrase: &str) -> Vec<Range<usize>> {
        let phrase = phrase.trim().to_lowercase();
        if phrase.is_empty() {
            return Vec::new();
        }
        let lower = &self.lower;
        // The end of a match in `text`: the end of the character its last byte came from.
        let end_in_text = |lower_end: usize| {
            let from = self.origin[lower_end - 1];
            from + self.text[from..].chars().next().map_or(0, char::len_utf8)
        };
        let is_word = |c: char| c.is_alphanumeric() || c == '_';
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(at) = lower[from..].find(&phrase) {
            let start = from + at;
            let end = start + phrase.len();
            let before = lower[..start].chars().next_back();
            let after = lower[end..].chars().next();
            if !before.is_some_and(is_word) && !after.is_some_and(is_word) {
                found.push(self.origin[start]..end_in_text(end));
            }
            from = start + phrase.chars().next().map_or(1, char::len_utf8);
        }
        found
    }
}

/// A part of a completion by its reasoning-format tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Segment {
    /// Outside any tag.
    Other,
    /// Between `<think>` and `</think>` (or the end, when it is never closed).
    Think,
    /// Between `<answer>` and `</answer>` (or the end).
    Answer,
    /// A tag itself.
    Tag,
}

/// The `<think>…</think>` and `<answer>…</answer>` parts of `text`, as byte ranges covering it
/// in order. A tag that is never closed runs to the end; a closing tag without its opening one
/// is a `Tag` and changes nothing.
pub fn segments(text: &str) -> Vec<(Range<usize>, Segment)> {
    // (tag, opens it, the segment it opens or closes)
    const TAGS: [(&str, bool, Segment); 4] = [
        ("<think>", true, Segment::Think),
        ("</think>", false, Segment::Think),
        ("<answer>", true, Segment::Answer),
        ("</answer>", false, Segment::Answer),
    ];
    let mut out: Vec<(Range<usize>, Segment)> = Vec::new();
    let mut push = |range: Range<usize>, segment: Segment| {
        if range.is_empty() {
            return;
        }
        match out.last_mut() {
            Some((last, s)) if *s == segment && last.end == range.start => last.end = range.end,
            _ => out.push((range, segment)),
        }
    };
    let mut inside = Segment::Other;
    let mut at = 0;
    let mut plain_from = 0;
    while at < text.len() {
        let rest = &text[at..];
        let tag = TAGS.iter().find(|(tag, ..)| rest.starts_with(tag));
        match tag {
            Some(&(tag, opens, segment)) => {
                push(plain_from..at, inside);
                push(at..at + tag.len(), Segment::Tag);
                if opens {
                    inside = segment;
                } else if inside == segment {
                    inside = Segment::Other;
                }
                at += tag.len();
                plain_from = at;
            }
            None => at += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    push(plain_from..text.len(), inside);
    out
}

/// Least squares of `R = −a·exp(H) + b` over `(H, R)` points.
pub fn fit_entropy_reward(points: &[(f64, f64)]) -> Option<EntropyFit> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let xs: Vec<f64> = points.iter().map(|p| p.0.exp()).collect();
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
    if sxx.is_nan() || sxx <= 1e-12 * (1.0 + mean_x * mean_x) {
        return None;
    }
    let sxy: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, p)| (x - mean_x) * (p.1 - mean_y))
        .sum();
    let slope = sxy / sxx;
    let b = mean_y - slope * mean_x;
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    let ss_res: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, p)| (p.1 - (slope * x + b)).powi(2))
        .sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    Some(EntropyFit {
        a: -slope,
        b,
        r2,
        points: points.len(),
    })
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Analyses one step's traces; `forking` receives the texts of its forking tokens.
fn analyse_step(
    step: u64,
    traces: &[Trace],
    options: &AnalysisOptions,
    token_text: &mut dyn FnMut(u32) -> String,
    forking: &mut HashMap<String, usize>,
) -> StepAnalysis {
    let entropies: Vec<f32> = traces
        .iter()
        .flat_map(|t| t.tokens.iter().map(|x| x.entropy))
        .collect();
    let ids: Vec<u32> = traces
        .iter()
        .flat_map(|t| t.tokens.iter().map(|x| x.id))
        .collect();
    let chosen = top_share(&entropies, options.rho);
    // Counted by id, then by text (several ids can share a text once trimmed).
    let mut by_id: HashMap<u32, usize> = HashMap::new();
    for &i in &chosen {
        *by_id.entry(ids[i]).or_default() += 1;
    }
    for (id, n) in by_id {
        *forking
            .entry(token_text(id).trim().to_string())
            .or_default() += n;
    }
    let forking_threshold = chosen
        .iter()
        .map(|&i| f64::from(entropies[i]))
        .fold(f64::INFINITY, f64::min);
    let mut reflection = vec![0; options.reflection_words.len()];
    for t in traces {
        // Lower-cased once per completion, for every phrase.
        let lowered = Lowered::new(&t.completion);
        for (n, w) in reflection.iter_mut().zip(&options.reflection_words) {
            *n += lowered.matches(w).len();
        }
    }
    let judged: Vec<&Trace> = traces.iter().filter(|t| t.correct.is_some()).collect();
    let length_of = |correct: bool| {
        mean(
            judged
                .iter()
                .filter(|t| t.correct == Some(correct))
                .map(|t| t.tokens.len() as f64),
        )
    };
    StepAnalysis {
        step,
        rollouts: traces.len(),
        tokens: entropies.len(),
        mean_entropy: mean(entropies.iter().map(|&h| f64::from(h))).unwrap_or(f64::NAN),
        high_entropy_share: mean(
            entropies
                .iter()
                .map(|&h| f64::from(u8::from(h > options.threshold))),
        )
        .unwrap_or(f64::NAN),
        forking_threshold: if forking_threshold.is_finite() {
            forking_threshold
        } else {
            f64::NAN
        },
        mean_reward: mean(traces.iter().map(|t| t.reward)).unwrap_or(f64::NAN),
        accuracy: mean(
            judged
                .iter()
                .map(|t| f64::from(u8::from(t.correct == Some(true)))),
        ),
        mean_length_correct: length_of(true),
        mean_length_wrong: length_of(false),
        reflection_per_rollout: reflection.iter().sum::<usize>() as f64
            / traces.len().max(1) as f64,
        reflection,
    }
}

/// Analyses a run's traces, given step by step in step order (`studio analyze`, the Traces
/// view). `token_text` gives a token id's text (the run's tokenizer).
pub fn analyse(
    steps: impl IntoIterator<Item = (u64, Vec<Trace>)>,
    options: &AnalysisOptions,
    token_text: &mut dyn FnMut(u32) -> String,
) -> RunAnalysis {
    // A token's text is asked once per id: forking tokens repeat the same few ids.
    let mut texts: HashMap<u32, String> = HashMap::new();
    let mut token_text = |id: u32| texts.entry(id).or_insert_with(|| token_text(id)).clone();
    let mut out = Vec::new();
    let mut per_step_forking: Vec<HashMap<String, usize>> = Vec::new();
    for (step, traces) in steps {
        if traces.is_empty() {
            continue;
        }
        let mut forking = HashMap::new();
        out.push(analyse_step(
            step,
            &traces,
            options,
            &mut token_text,
            &mut forking,
        ));
        per_step_forking.push(forking);
    }
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for step in &per_step_forking {
        for (text, n) in step {
            *totals.entry(text.as_str()).or_default() += n;
        }
    }
    let mut ranked: Vec<(&str, usize)> = totals.into_iter().collect();
    // Most frequent first; equal counts in text order (the map's), so the list is stable.
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    let forking_tokens = ranked
        .into_iter()
        .take(options.top_forking)
        .map(|(text, total)| ForkingToken {
            text: text.to_string(),
            total,
            per_step: per_step_forking
                .iter()
                .map(|s| s.get(text).copied().unwrap_or(0))
                .collect(),
        })
        .collect();
    let points: Vec<(f64, f64)> = out
        .iter()
        .filter(|s| s.mean_entropy.is_finite() && s.mean_reward.is_finite())
        .map(|s| (s.mean_entropy, s.mean_reward))
        .collect();
    RunAnalysis {
        fit: fit_entropy_reward(&points),
        steps: out,
        reflection_words: options.reflection_words.clone(),
        forking_tokens,
    }
}

/// Analyses every stored step of run `run`'s traces of `kind`, read one step at a time
/// (`studio analyze`, the Traces view's Run analytics). Returns how many steps were read, with
/// the analysis.
pub fn analyse_stored(
    workspace: &Workspace,
    run: RunId,
    kind: TraceKind,
    options: &AnalysisOptions,
    token_text: &mut dyn FnMut(u32) -> String,
) -> Result<(usize, RunAnalysis), StoreError> {
    let steps = workspace.trace_steps(run, kind)?;
    let mut all = Vec::with_capacity(steps.len());
    for (step, _) in &steps {
        all.push((*step, workspace.traces(run, *step, kind)?));
    }
    Ok((steps.len(), analyse(all, options, token_text)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn forking_overlap_counts_shared_top_positions() {
        // ρ = 0.5 of 4 tokens: the 2 highest each.
        let a = vec![0.1, 2.0, 3.0, 0.2]; // {1, 2}
        let b = vec![5.0, 0.0, 4.0, 0.3]; // {0, 2}
        let c = vec![0.0, 0.0, 1.0, 1.0]; // {2, 3}
        let d = vec![9.0, 0.0, 0.0, 8.0]; // {0, 3}
        let overlap = super::forking_overlap(&[a, b, c, d], 0.5);
        assert_eq!(
            overlap.positions,
            vec![vec![1, 2], vec![0, 2], vec![2, 3], vec![0, 3]]
        );
        assert_eq!(
            overlap.shared_with_first,
            vec![Some(1.0), Some(0.5), Some(0.5), Some(0.0)]
        );
        assert_eq!(
            super::forking_overlap(&[vec![], vec![]], 0.2).shared_with_first,
            vec![None, None]
        );
    }

    use super::*;
    use crate::store::{TraceKind, TraceToken};

    fn trace(step: u64, ids_entropies: &[(u32, f32)], completion: &str, reward: f64) -> Trace {
        Trace {
            step,
            kind: TraceKind::Rollout,
            prompt_index: 0,
            sample_index: 0,
            prompt: "p".into(),
            completion: completion.into(),
            tokens: ids_entropies
                .iter()
                .map(|&(id, entropy)| TraceToken {
                    id,
                    logprob: -1.0,
                    entropy,
                    top: Vec::new(),
                    counted: true,
                    trained: true,
                })
                .collect(),
            reward,
            rewards: Vec::new(),
            advantage: 0.0,
            correct: Some(reward > 0.5),
            finish_reason: "eos".into(),
        }
    }

    #[test]
    fn top_share_chooses_exactly_ceil_rho_n_with_ties_by_position() {
        let h = [0.1, 0.9, 0.5, 0.9, 0.2, 0.7, 0.0, 0.3, 0.6, 0.4];
        assert_eq!(top_share(&h, 0.2), vec![1, 3]);
        assert_eq!(top_share(&h, 0.3), vec![1, 3, 5]);
        // ⌈0.25 · 10⌉ = 3.
        assert_eq!(top_share(&h, 0.25), vec![1, 3, 5]);
        assert_eq!(top_share(&h, 1.0).len(), 10);
        // Ties at the boundary: the earlier one.
        assert_eq!(top_share(&[0.5, 0.5, 0.5], 0.34), vec![0, 1]);
        assert_eq!(top_share(&[0.5, 0.5, 0.5], 0.01), vec![0]);
        assert!(top_share(&[], 0.2).is_empty());
    }

    #[test]
    fn reflection_phrases_count_whole_words_only() {
        let text = "Wait, 3+4=7. Hmm... wait; I awaited. Let me check: let me  check. WAIT";
        assert_eq!(count_phrase(text, "wait"), 3);
        assert_eq!(count_phrase(text, "hmm"), 1);
        assert_eq!(count_phrase(text, "let me check"), 1);
        assert_eq!(count_phrase(text, "await"), 0);
        assert_eq!(count_phrase("waitwait wait", "wait"), 1);
        assert_eq!(count_phrase("ünïcödé wait ü", "wait"), 1);
        assert_eq!(count_phrase("anything", " "), 0);
    }

    #[test]
    fn phrase_matches_are_byte_ranges_of_the_original_text() {
        let text = "Wait, 3+4=7. I awaited. WAIT";
        let found = phrase_matches(text, "wait");
        assert_eq!(found, vec![0..4, 24..28]);
        assert_eq!(&text[found[1].clone()], "WAIT");
        // 'İ' lowers to two characters (three bytes for two): offsets after it still point at
        // the original text.
        let text = "İ hmm İİ Hmm";
        let found = phrase_matches(text, "hmm");
        let shown: Vec<&str> = found.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(shown, vec!["hmm", "Hmm"]);
        assert_eq!(found[1], 12..15);
    }

    #[test]
    fn segments_follow_think_and_answer_tags() {
        use Segment::*;
        let text = "a<think>b c</think><answer>42</answer>z";
        let parts: Vec<(&str, Segment)> = segments(text)
            .into_iter()
            .map(|(r, s)| (&text[r], s))
            .collect();
        assert_eq!(
            parts,
            vec![
                ("a", Other),
                ("<think>", Tag),
                ("b c", Think),
                ("</think><answer>", Tag),
                ("42", Answer),
                ("</answer>", Tag),
                ("z", Other),
            ]
        );
        // Unclosed: runs to the end; a stray closing tag of the other kind changes nothing.
        let text = "<think>x</answer>y";
        let parts: Vec<(&str, Segment)> = segments(text)
            .into_iter()
            .map(|(r, s)| (&text[r], s))
            .collect();
        assert_eq!(
            parts,
            vec![
                ("<think>", Tag),
                ("x", Think),
                ("</answer>", Tag),
                ("y", Think)
            ]
        );
        assert!(segments("").is_empty());
        assert_eq!(segments("plain"), vec![(0..5, Other)]);
    }

    #[test]
    fn the_exp_fit_recovers_known_coefficients() {
        let (a, b) = (0.35, 1.2);
        let points: Vec<(f64, f64)> = [0.1, 0.4, 0.8, 1.1, 1.5]
            .iter()
            .map(|&h: &f64| (h, -a * h.exp() + b))
            .collect();
        let fit = fit_entropy_reward(&points).expect("fits");
        assert!(
            (fit.a - a).abs() < 1e-12 && (fit.b - b).abs() < 1e-12,
            "{fit:?}"
        );
        assert!((fit.r2 - 1.0).abs() < 1e-12);
        // With noise the fit is the least-squares one: hand-computed for x = e^H.
        let noisy = [(0.0, 1.0), ((2.0f64).ln(), 0.0), ((3.0f64).ln(), 0.5)];
        // x = 1, 2, 3; y = 1, 0, 0.5: slope = Σ(x−2)(y−0.5)/Σ(x−2)² = (−0.5 + 0)/2 = −0.25.
        let fit = fit_entropy_reward(&noisy).expect("fits");
        assert!((fit.a - 0.25).abs() < 1e-12, "{fit:?}");
        assert!((fit.b - 1.0).abs() < 1e-12, "{fit:?}");
        assert!(fit_entropy_reward(&noisy[..2]).is_none(), "two points");
        assert!(fit_entropy_reward(&[(0.5, 1.0); 4]).is_none(), "no spread");
    }

    #[test]
    fn a_synthetic_run_gives_the_hand_computed_series() {
        // Step 1: two rollouts, 5 tokens; step 2: one rollout, 5 tokens.
        let steps = vec![
            (
                1,
                vec![
                    trace(1, &[(10, 0.1), (11, 2.0), (12, 0.3)], "Wait, 12. wait", 1.0),
                    trace(1, &[(11, 1.5), (13, 0.9)], "hmm 13", 0.0),
                ],
            ),
            (
                2,
                vec![trace(
                    2,
                    &[(11, 0.2), (12, 0.1), (13, 0.8), (10, 0.05), (12, 0.0)],
                    "Alternatively 14",
                    1.0,
                )],
            ),
            (3, Vec::new()),
        ];
        let names = |id: u32| format!(" t{id}");
        let options = AnalysisOptions {
            rho: 0.4,
            ..AnalysisOptions::default()
        };
        let run = analyse(steps, &options, &mut |id| names(id));
        assert_eq!(run.steps.len(), 2, "a step without traces is left out");
        let s1 = &run.steps[0];
        assert_eq!((s1.step, s1.rollouts, s1.tokens), (1, 2, 5));
        assert!((s1.mean_entropy - (0.1 + 2.0 + 0.3 + 1.5 + 0.9) / 5.0).abs() < 1e-6);
        // Above 0.672: 2.0, 1.5, 0.9.
        assert!((s1.high_entropy_share - 0.6).abs() < 1e-12);
        // ⌈0.4 · 5⌉ = 2 forking tokens: 2.0 (t11) and 1.5 (t11).
        assert!((s1.forking_threshold - 1.5).abs() < 1e-6);
        assert_eq!(s1.accuracy, Some(0.5));
        assert_eq!(s1.mean_length_correct, Some(3.0));
        assert_eq!(s1.mean_length_wrong, Some(2.0));
        let wait = options
            .reflection_words
            .iter()
            .position(|w| w == "wait")
            .expect("\"wait\" is a default reflection word");
        let hmm = options
            .reflection_words
            .iter()
            .position(|w| w == "hmm")
            .expect("\"hmm\" is a default reflection word");
        assert_eq!(s1.reflection[wait], 2);
        assert_eq!(s1.reflection[hmm], 1);
        assert!((s1.reflection_per_rollout - 1.5).abs() < 1e-12);
        let s2 = &run.steps[1];
        assert_eq!(s2.mean_length_wrong, None);
        // Step 2's two forking tokens: 0.8 (t13) and 0.2 (t11).
        assert!((s2.forking_threshold - 0.2).abs() < 1e-6);
        assert_eq!(run.forking_tokens[0].text, "t11");
        assert_eq!(run.forking_tokens[0].total, 3);
        assert_eq!(run.forking_tokens[0].per_step, vec![2, 1]);
        assert_eq!(run.forking_tokens[1].text, "t13");
        assert_eq!(run.forking_tokens[1].per_step, vec![0, 1]);
        assert_eq!(run.forking_tokens.len(), 2);
        assert!(run.fit.is_none(), "two steps do not make a fit");
    }
}
