//! [`judge`]: the one function that decides whether a completion answers rightly. The rules are
//! in [`super::answer`]'s doc (extraction, exact numbers, text); built-in problems are checked by
//! their task's own verifier ([`super::builtin::BuiltinTask::verify`]).

use super::answer::{answers_equal, extract};
use super::builtin::{BuiltinTask, Problem};

/// What a completion is judged against.
#[derive(Debug, Clone, Copy)]
pub enum Reference<'a> {
    /// A built-in problem: its task's exact verifier.
    Problem(&'a Problem),
    /// A dataset's answer column (GSM8K's `… #### 72`, MATH's `\boxed{}`, a bare answer): its
    /// answer is extracted by the same rules as the completion's.
    Answer(&'a str),
}

impl<'a> Reference<'a> {
    /// The reference of an example: its built-in problem if it has one, else its answer; `None`
    /// when it has neither (nothing to judge against).
    pub fn of(problem: Option<&'a Problem>, answer: Option<&'a str>) -> Option<Self> {
        problem
            .map(Self::Problem)
            .or_else(|| answer.map(Self::Answer))
    }
}

/// A judged completion: the answer read from it and whether it is right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub answer: String,
    pub correct: bool,
}

/// Whether `completion` answers `reference` rightly, and the answer it was judged by.
pub fn judge(completion: &str, reference: Reference<'_>) -> Verdict {
    match reference {
        Reference::Problem(problem) => {
            let answer = problem.task.answer_of(completion);
            let correct = problem.task.verify_answer(problem, &answer);
            Verdict { answer, correct }
        }
        Reference::Answer(reference) => {
            let answer = extract(completion);
            let correct = answers_equal(&answer, &extract(reference));
            Verdict { answer, correct }
        }
    }
}

impl BuiltinTask {
    /// The answer a completion gives to this task: countdown's is the marked expression (or the
    /// whole text, which is then checked as an expression), the others' the extracted number.
    pub fn answer_of(self, completion: &str) -> String {
        match self {
            BuiltinTask::Countdown => {
                super::answer::marked(completion).unwrap_or_else(|| completion.trim().to_string())
            }
            BuiltinTask::Arithmetic | BuiltinTask::LinearEquation => extract(completion),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_answers_are_extracted_on_both_sides() {
        let gsm8k = "48/2 = 24. 48 + 24 = 72.\n#### 72";
        for (completion, correct) in [
            ("The total is 72.", true),
            ("<think>48+24</think><answer>72.0</answer>", true),
            ("\\boxed{72}", true),
            ("The total is 71.", false),
            ("seventy-two", false),
        ] {
            let v = judge(completion, Reference::Answer(gsm8k));
            assert_eq!(v.correct, correct, "{completion:?}");
        }
        let v = judge("so it is \\boxed{\\frac{1}{2}}", Reference::Answer("0.5"));
        assert_eq!((v.answer.as_str(), v.correct), ("\\frac{1}{2}", true));
        assert!(judge("<answer> paris </answer>", Reference::Answer("Paris")).correct);
    }

    #[test]
    fn builtin_problems_keep_their_verifiers() {
        let problem = BuiltinTask::Countdown.problem(3, 7);
        let target = problem.target.expect("target");
        let expression = problem.answer.clone();
        let reference = Reference::Problem(&problem);
        assert!(judge(&format!("<answer>{expression}</answer>"), reference).correct);
        assert!(
            judge(&expression, reference).correct,
            "an unmarked expression"
        );
        let v = judge(&format!("<answer>{target}</answer>"), reference);
        assert!(!v.correct, "the bare target is no expression");

        let problem = BuiltinTask::Arithmetic.problem(0, 0);
        let reference = Reference::Problem(&problem);
        assert!(judge("<answer>22</answer>", reference).correct);
        assert!(judge("<answer>22.0</answer>", reference).correct);
        assert!(judge("so 11+11=22", reference).correct);
        // A boxed fraction is judged by its value, not read a second time.
        assert!(judge("\\boxed{\\frac{44}{2}}", reference).correct);
        assert!(!judge("<answer>21</answer>", reference).correct);

        let problem = BuiltinTask::LinearEquation.problem(0, 0);
        let reference = Reference::Problem(&problem);
        for completion in ["<answer>3</answer>", "<answer>x=3</answer>", "x = 3"] {
            assert!(judge(completion, reference).correct, "{completion:?}");
        }
        assert!(!judge("<answer>x=4</answer>", reference).correct);
    }

    #[test]
    fn a_problem_is_preferred_to_its_answer_text() {
        let problem = BuiltinTask::Countdown.problem(1, 2);
        let r = Reference::of(Some(&problem), Some(&problem.answer));
        assert!(matches!(r, Some(Reference::Problem(_))));
        assert!(matches!(
            Reference::of(None, Some("4")),
            Some(Reference::Answer("4"))
        ));
        assert!(Reference::of(None, None).is_none());
    }
}
