//! Built-in tasks, written by this project: procedural, seeded problems with exact verifiers, short
//! and regular enough that the built-in tiny reasoner (a character-level model of about a million
//! parameters) learns them in minutes.
//!
//! - `arithmetic`: `(12+7)*3=` with worked steps `12+7=19. 19*3=57.` and answer `57`;
//! - `countdown`: `Make 44 with 3, 25, 2.`; any expression that uses the given numbers at most once
//!   each (+ − × ÷, exact integer division) and reaches the target is correct;
//! - `linear_equation`: `Solve 3x+5=20.` with steps `3x=20-5=15. x=15/3=5.` and answer `5`.
//!
//! Problems depend only on (task, seed, index, difficulty), through a hand-written SplitMix64
//! generator so they never change with a dependency's version.

use super::Example;
use super::answer::answers_equal;

/// A built-in task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinTask {
    Arithmetic,
    Countdown,
    LinearEquation,
}

/// One generated problem with its reference reasoning and answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub task: BuiltinTask,
    pub prompt: String,
    pub reasoning: String,
    pub answer: String,
    /// Countdown's input numbers; empty for the other tasks.
    pub numbers: Vec<i64>,
    /// Countdown's target; `None` for the other tasks.
    pub target: Option<i64>,
}

impl Problem {
    /// The problem as a training example (prompt, reasoning, answer).
    pub fn example(&self) -> Example {
        Example {
            prompt: self.prompt.clone(),
            reasoning: Some(self.reasoning.clone()),
            answer: Some(self.answer.clone()),
            messages: Vec::new(),
            image: None,
        }
    }
}

/// The difficulty [`BuiltinTask::problem`] uses.
pub const DEFAULT_DIFFICULTY: u8 = 1;
/// The highest difficulty with its own settings; higher values act as this.
pub const MAX_DIFFICULTY: u8 = 3;

impl BuiltinTask {
    pub const ALL: [BuiltinTask; 3] = [
        BuiltinTask::Arithmetic,
        BuiltinTask::Countdown,
        BuiltinTask::LinearEquation,
    ];

    /// The snake_case name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinTask::Arithmetic => "arithmetic",
            BuiltinTask::Countdown => "countdown",
            BuiltinTask::LinearEquation => "linear_equation",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            BuiltinTask::Arithmetic => {
                "Multi-step integer arithmetic with + - * (e.g. (12+7)*3=), worked steps, integer answer"
            }
            BuiltinTask::Countdown => {
                "Reach a target with given numbers, each used at most once, + - * / (exact division); any valid expression is correct"
            }
            BuiltinTask::LinearEquation => {
                "Solve a*x + b = c for an integer x (e.g. Solve 3x+5=20.), worked steps, answer x"
            }
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == name || t.name().replace('_', "-") == name)
    }

    /// Deterministic: the same (seed, index) always gives the same problem. Default difficulty.
    pub fn problem(self, seed: u64, index: u64) -> Problem {
        self.problem_with(seed, index, DEFAULT_DIFFICULTY)
    }

    /// A problem at `difficulty` 0 (easiest) to [`MAX_DIFFICULTY`]: more steps, bigger numbers.
    pub fn problem_with(self, seed: u64, index: u64, difficulty: u8) -> Problem {
        let difficulty = difficulty.min(MAX_DIFFICULTY);
        let task_tag = self as u64 + 1;
        let state = mix(mix(mix(seed) ^ index) ^ (task_tag << 8 | u64::from(difficulty)));
        let mut rng = SplitMix64(state);
        match self {
            BuiltinTask::Arithmetic => arithmetic(&mut rng, difficulty),
            BuiltinTask::Countdown => countdown(&mut rng, difficulty),
            BuiltinTask::LinearEquation => linear_equation(&mut rng, difficulty),
        }
    }

    /// The problem a prompt of this task states, rebuilt from its text (`12+7*3=`, `Make 44
    /// with 3, 25, 2.`, `Solve 3x+5=20.`), so completions kept outside the studio can be judged
    /// by the task's verifier; `None` when the text is not this task's prompt. The reasoning is
    /// left empty.
    pub fn problem_from_prompt(self, prompt: &str) -> Option<Problem> {
        let prompt = prompt.trim();
        let (answer, numbers, target) = match self {
            BuiltinTask::Arithmetic => {
                let expression = prompt.strip_suffix('=')?;
                (evaluate(expression).ok()?.0.to_string(), Vec::new(), None)
            }
            BuiltinTask::Countdown => {
                let rest = prompt.strip_prefix("Make ")?.strip_suffix('.')?;
                let (target, listed) = rest.split_once(" with ")?;
                let target: i64 = target.trim().parse().ok()?;
                let numbers = listed
                    .split(',')
                    .map(|n| n.trim().parse::<i64>().ok())
                    .collect::<Option<Vec<_>>>()?;
                (String::new(), numbers, Some(target))
            }
            BuiltinTask::LinearEquation => {
                let equation = prompt.strip_prefix("Solve ")?.strip_suffix('.')?;
                let (lhs, c) = equation.split_once('=')?;
                let (a, b) = lhs.split_once('x')?;
                let a: i64 = a.parse().ok()?;
                let b: i64 = b.strip_prefix('+').unwrap_or(b).parse().ok()?;
                let c: i64 = c.parse().ok()?;
                let ax = c.checked_sub(b)?;
                (a != 0 && ax % a == 0).then_some(())?;
                ((ax / a).to_string(), Vec::new(), None)
            }
        };
        Some(Problem {
            task: self,
            prompt: prompt.to_string(),
            reasoning: String::new(),
            answer,
            numbers,
            target,
        })
    }

    /// Exact check of a completion: its answer is read with [`BuiltinTask::answer_of`], then
    /// checked ([`BuiltinTask::verify_answer`]). [`super::verdict::judge`] is the entry point
    /// every caller uses.
    pub fn verify(self, problem: &Problem, completion: &str) -> bool {
        self.verify_answer(problem, &self.answer_of(completion))
    }

    /// Exact check of an answer already read from a completion (it is not read again: the
    /// reading is not idempotent, `\frac{44}{2}` read again is its last number).
    pub fn verify_answer(self, problem: &Problem, answer: &str) -> bool {
        let answer = answer.trim();
        match self {
            BuiltinTask::Arithmetic => answers_equal(answer, &problem.answer),
            BuiltinTask::LinearEquation => {
                let value = answer
                    .strip_prefix("x")
                    .map(|rest| rest.trim_start())
                    .and_then(|rest| rest.strip_prefix('='))
                    .map_or(answer, str::trim);
                answers_equal(value, &problem.answer)
            }
            BuiltinTask::Countdown => match problem.target {
                Some(target) => countdown_check(answer, &problem.numbers, target).is_ok(),
                None => false,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random numbers

/// SplitMix64's output function: a bijective 64-bit mix.
/// SplitMix64's finalizer: a well-mixed 64-bit hash of `z` (seeded draws that must not change
/// with a dependency's version).
pub(crate) fn splitmix(z: u64) -> u64 {
    mix(z)
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo) as u64 + 1;
        lo + (self.next() % span) as i64
    }

    fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.next() % denominator < numerator
    }
}

// ---------------------------------------------------------------------------------------------
// Arithmetic

/// Builds `expr op n` text, parenthesizing the left side when `op` binds tighter than its top
/// level operator. Returns the new text and whether its top level is now additive.
fn extend_expression(expr: &str, additive_top: bool, op: char, n: i64) -> (String, bool) {
    match op {
        '+' | '-' => (format!("{expr}{op}{n}"), true),
        _ if additive_top => (format!("({expr}){op}{n}"), false),
        _ => (format!("{expr}{op}{n}"), false),
    }
}

fn arithmetic(rng: &mut SplitMix64, difficulty: u8) -> Problem {
    let (min_ops, max_ops, max_term, max_factor, allow_negative) = match difficulty {
        0 => (1, 2, 9, 5, false),
        1 => (2, 3, 20, 9, false),
        2 => (3, 4, 50, 12, true),
        _ => (4, 5, 100, 20, true),
    };
    let ops = rng.range(min_ops, max_ops);
    let mut value = rng.range(1, max_term);
    let mut expr = value.to_string();
    let mut additive_top = false;
    let mut steps = Vec::new();
    for _ in 0..ops {
        let mut op = ['+', '-', '*'][rng.range(0, 2) as usize];
        if op == '*' && value.abs() > 200 {
            op = '+';
        }
        let n = match op {
            '*' => rng.range(2, max_factor),
            '-' if !allow_negative && value <= 1 => {
                op = '+';
                rng.range(1, max_term)
            }
            '-' if !allow_negative => rng.range(1, value.min(max_term)),
            _ => rng.range(1, max_term),
        };
        let next = match op {
            '+' => value + n,
            '-' => value - n,
            _ => value * n,
        };
        steps.push(format!("{value}{op}{n}={next}."));
        (expr, additive_top) = extend_expression(&expr, additive_top, op, n);
        value = next;
    }
    Problem {
        task: BuiltinTask::Arithmetic,
        prompt: format!("{expr}="),
        reasoning: steps.join(" "),
        answer: value.to_string(),
        numbers: Vec::new(),
        target: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Countdown

fn countdown(rng: &mut SplitMix64, difficulty: u8) -> Problem {
    let (min_count, max_count, max_number) = match difficulty {
        0 => (3, 3, 10),
        1 => (3, 4, 25),
        2 => (4, 5, 50),
        _ => (5, 6, 100),
    };
    let count = rng.range(min_count, max_count) as usize;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let numbers: Vec<i64> = (0..count).map(|_| rng.range(1, max_number)).collect();
        // Build the target from a random expression over the numbers in a random order.
        let mut order: Vec<usize> = (0..count).collect();
        for i in (1..count).rev() {
            order.swap(i, rng.range(0, i as i64) as usize);
        }
        let mut value = numbers[order[0]];
        let mut expr = value.to_string();
        let mut additive_top = false;
        let mut steps = Vec::new();
        for &k in &order[1..] {
            let n = numbers[k];
            let mut choices = vec!['+'];
            if value > n {
                choices.push('-');
            }
            if n > 1 && value * n <= 1000 {
                choices.push('*');
            }
            if n > 1 && value % n == 0 {
                choices.push('/');
            }
            let op = choices[rng.range(0, choices.len() as i64 - 1) as usize];
            let next = match op {
                '+' => value + n,
                '-' => value - n,
                '*' => value * n,
                _ => value / n,
            };
            steps.push(format!("{value}{op}{n}={next}."));
            (expr, additive_top) = extend_expression(&expr, additive_top, op, n);
            value = next;
        }
        let trivial = numbers.contains(&value);
        if trivial && attempt < 16 {
            continue;
        }
        let listed: Vec<String> = numbers.iter().map(i64::to_string).collect();
        return Problem {
            task: BuiltinTask::Countdown,
            prompt: format!("Make {value} with {}.", listed.join(", ")),
            reasoning: steps.join(" "),
            answer: expr,
            numbers,
            target: Some(value),
        };
    }
}

/// Why a countdown answer is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountdownError {
    /// Not an expression of integers, + - * / and parentheses.
    Syntax(String),
    /// A division with a remainder, or by zero.
    InexactDivision,
    /// Beyond 64-bit integers.
    Overflow,
    /// A number not given, or given fewer times than used.
    NumberNotAvailable(i64),
    /// Evaluates to something else.
    WrongValue(i64),
}

/// Checks a countdown expression: it parses, uses each given number at most once (a literal is
/// one use; `-3` uses 3), divides exactly and evaluates to `target`. A trailing `= N` is ignored.
/// Returns the value.
pub fn countdown_check(
    expression: &str,
    numbers: &[i64],
    target: i64,
) -> Result<i64, CountdownError> {
    let expression = expression.split('=').next().unwrap_or_default();
    let (value, literals) = evaluate(expression)?;
    let mut available = numbers.to_vec();
    for literal in &literals {
        match available.iter().position(|n| n == literal) {
            Some(i) => {
                available.swap_remove(i);
            }
            None => return Err(CountdownError::NumberNotAvailable(*literal)),
        }
    }
    if value == target {
        Ok(value)
    } else {
        Err(CountdownError::WrongValue(value))
    }
}

/// The value of an integer expression of `+ - * / ( )` (exact division), as countdown reads it,
/// and the integer literals it uses.
fn evaluate(expression: &str) -> Result<(i64, Vec<i64>), CountdownError> {
    let mut parser = ExprParser {
        chars: expression.chars().collect(),
        pos: 0,
        literals: Vec::new(),
        depth: 0,
    };
    let value = parser.expression()?;
    parser.skip_ws();
    match parser.chars.get(parser.pos) {
        Some(c) => Err(CountdownError::Syntax(format!("unexpected `{c}`"))),
        None => Ok((value, parser.literals)),
    }
}

/// A recursive-descent parser and evaluator for `+ - * / ( )` over integer literals, with unary
/// minus (`-2 + 5` is how reasoning-gym writes `5 - 2`). `×`, `x`, `÷` and `−` are accepted.
struct ExprParser {
    chars: Vec<char>,
    pos: usize,
    literals: Vec<i64>,
    depth: usize,
}

const MAX_NESTING: usize = 64;

impl ExprParser {
    fn skip_ws(&mut self) {
        while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.chars.get(self.pos).copied()
    }

    /// expression := term (('+' | '-') term)*
    fn expression(&mut self) -> Result<i64, CountdownError> {
        let mut value = self.term()?;
        while let Some(op @ ('+' | '-' | '−')) = self.peek() {
            self.pos += 1;
            let rhs = self.term()?;
            value = if op == '+' {
                value.checked_add(rhs)
            } else {
                value.checked_sub(rhs)
            }
            .ok_or(CountdownError::Overflow)?;
        }
        Ok(value)
    }

    /// term := factor (('*' | '/') factor)*
    fn term(&mut self) -> Result<i64, CountdownError> {
        let mut value = self.factor()?;
        loop {
            match self.peek() {
                Some('*' | '×' | 'x' | 'X') => {
                    self.pos += 1;
                    let rhs = self.factor()?;
                    value = value.checked_mul(rhs).ok_or(CountdownError::Overflow)?;
                }
                Some('/' | '÷') => {
                    self.pos += 1;
                    let rhs = self.factor()?;
                    if rhs == 0 || value % rhs != 0 {
                        return Err(CountdownError::InexactDivision);
                    }
                    value /= rhs;
                }
                _ => return Ok(value),
            }
        }
    }

    /// factor := integer | '(' expression ')' | ('-' | '+') factor
    fn factor(&mut self) -> Result<i64, CountdownError> {
        match self.peek() {
            Some(sign @ ('-' | '−' | '+')) => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(CountdownError::Syntax("too deeply nested".into()));
                }
                self.pos += 1;
                let value = self.factor()?;
                self.depth -= 1;
                if sign == '+' {
                    Ok(value)
                } else {
                    value.checked_neg().ok_or(CountdownError::Overflow)
                }
            }
            Some('(') => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(CountdownError::Syntax("too deeply nested".into()));
                }
                self.pos += 1;
                let value = self.expression()?;
                if self.peek() != Some(')') {
                    return Err(CountdownError::Syntax("missing `)`".into()));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(value)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                while self.pos < self.chars.len() && self.chars[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let digits: String = self.chars[start..self.pos].iter().collect();
                let value = digits
                    .parse::<i64>()
                    .map_err(|_| CountdownError::Overflow)?;
                self.literals.push(value);
                Ok(value)
            }
            Some(c) => Err(CountdownError::Syntax(format!("unexpected `{c}`"))),
            None => Err(CountdownError::Syntax("unexpected end".into())),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Linear equations

fn linear_equation(rng: &mut SplitMix64, difficulty: u8) -> Problem {
    let (x_lo, x_hi, max_a, max_b, allow_negative) = match difficulty {
        0 => (0, 9, 5, 9, false),
        1 => (0, 12, 9, 20, false),
        2 => (-12, 12, 12, 50, true),
        _ => (-25, 25, 20, 100, true),
    };
    let x = rng.range(x_lo, x_hi);
    let mut a = rng.range(2, max_a);
    if allow_negative && rng.chance(1, 4) {
        a = -a;
    }
    let b_abs = rng.range(1, max_b);
    let b = if rng.chance(1, 2) { b_abs } else { -b_abs };
    let c = a * x + b;
    let sign = if b >= 0 { '+' } else { '-' };
    let inverse = if b >= 0 { '-' } else { '+' };
    let ax = a * x;
    Problem {
        task: BuiltinTask::LinearEquation,
        prompt: format!("Solve {a}x{sign}{b_abs}={c}."),
        reasoning: format!("{a}x={c}{inverse}{b_abs}={ax}. x={ax}/{a}={x}."),
        answer: x.to_string(),
        numbers: Vec::new(),
        target: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_deterministic_and_vary_with_seed_and_index() {
        for task in BuiltinTask::ALL {
            for difficulty in 0..=MAX_DIFFICULTY {
                let a = task.problem_with(7, 3, difficulty);
                assert_eq!(a, task.problem_with(7, 3, difficulty));
            }
            let distinct: std::collections::HashSet<String> =
                (0..50).map(|i| task.problem(1, i).prompt).collect();
            assert!(distinct.len() > 30, "{task:?}: {}", distinct.len());
            assert_ne!(task.problem(1, 0), task.problem(2, 0));
        }
    }

    #[test]
    fn pinned_problems_do_not_drift() {
        // A change here changes every seeded run's data: make it on purpose.
        let arithmetic = BuiltinTask::Arithmetic.problem(0, 0);
        assert_eq!(arithmetic.prompt, "1*8+3+11=");
        assert_eq!(arithmetic.reasoning, "1*8=8. 8+3=11. 11+11=22.");
        assert_eq!(arithmetic.answer, "22");
        let countdown = BuiltinTask::Countdown.problem(0, 0);
        assert_eq!(countdown.prompt, "Make 27 with 10, 9, 9, 1.");
        assert_eq!(countdown.answer, "9+10+9-1");
        assert_eq!(countdown.numbers, [10, 9, 9, 1]);
        assert_eq!(countdown.target, Some(27));
        let equation = BuiltinTask::LinearEquation.problem(0, 0);
        assert_eq!(equation.prompt, "Solve 7x+11=32.");
        assert_eq!(equation.reasoning, "7x=32-11=21. x=21/7=3.");
        assert_eq!(equation.answer, "3");
    }

    #[test]
    fn reference_answers_verify_and_wrong_ones_do_not() {
        for task in BuiltinTask::ALL {
            for difficulty in 0..=MAX_DIFFICULTY {
                for i in 0..200 {
                    let p = task.problem_with(42, i, difficulty);
                    assert!(task.verify(&p, &p.answer), "{p:?}");
                    assert!(task.verify(&p, &format!("<answer>{}</answer>", p.answer)));
                    let wrong = match task {
                        BuiltinTask::Countdown => format!("{}+1", p.answer),
                        _ => (p.answer.parse::<i64>().unwrap_or(0) + 1).to_string(),
                    };
                    assert!(!task.verify(&p, &wrong), "{p:?} accepted {wrong}");
                    assert!(!task.verify(&p, ""), "{p:?}");
                }
            }
        }
    }

    #[test]
    fn arithmetic_steps_recompute_the_answer() {
        for i in 0..200 {
            let p = BuiltinTask::Arithmetic.problem(5, i);
            let expression = p.prompt.trim_end_matches('=');
            // The prompt evaluated with precedence equals the answer.
            let value = countdown_value(expression);
            assert_eq!(value.to_string(), p.answer, "{p:?}");
            let last = p.reasoning.rsplit('=').next().unwrap_or_default();
            assert_eq!(last.trim_end_matches('.'), p.answer);
        }
    }

    fn countdown_value(expression: &str) -> i64 {
        let mut parser = ExprParser {
            chars: expression.chars().collect(),
            pos: 0,
            literals: Vec::new(),
            depth: 0,
        };
        parser.expression().expect("parses")
    }

    #[test]
    fn linear_equation_solution_satisfies_the_equation() {
        for i in 0..200 {
            let p = BuiltinTask::LinearEquation.problem_with(3, i, 3);
            let x: i64 = p.answer.parse().expect("integer");
            let body = p.prompt.trim_start_matches("Solve ").trim_end_matches('.');
            let (lhs, rhs) = body.split_once('=').expect("equation");
            let c: i64 = rhs.parse().expect("c");
            let (a, rest) = lhs.split_once('x').expect("x");
            let a: i64 = a.parse().expect("a");
            let b: i64 = rest.replace('+', "").parse().expect("b");
            assert_eq!(a * x + b, c, "{p:?}");
            assert!(BuiltinTask::LinearEquation.verify(&p, &format!("x = {x}")));
            assert!(BuiltinTask::LinearEquation.verify(&p, &format!("{x}.0")));
        }
    }

    #[test]
    fn countdown_is_always_solvable_with_its_own_answer() {
        for i in 0..500 {
            let p = BuiltinTask::Countdown.problem_with(9, i, (i % 4) as u8);
            let target = p.target.expect("target");
            assert_eq!(countdown_check(&p.answer, &p.numbers, target), Ok(target));
            assert!(p.prompt.contains(&target.to_string()));
        }
    }

    fn countdown_problem(numbers: &[i64], target: i64) -> Problem {
        Problem {
            task: BuiltinTask::Countdown,
            prompt: String::new(),
            reasoning: String::new(),
            answer: "(25-3)*2".into(),
            numbers: numbers.to_vec(),
            target: Some(target),
        }
    }

    #[test]
    fn countdown_verifier_accepts_alternatives_and_rejects_cheats() {
        let p = countdown_problem(&[25, 3, 2, 8], 44);
        let task = BuiltinTask::Countdown;
        assert!(task.verify(&p, "(25-3)*2"));
        assert!(task.verify(&p, "2*(25 - 3)"), "another valid expression");
        assert!(task.verify(&p, "25+8*2+3"), "another valid expression");
        assert!(task.verify(&p, "(25-3)×2 = 44"));
        assert!(!task.verify(&p, "25+25-3-3"), "reuses 25 and 3");
        assert!(!task.verify(&p, "44"), "44 is not given");
        assert!(task.verify(&p, "2*(-3+25)"), "unary minus");
        assert!(!task.verify(&p, "-3+25*2-3"), "reuses 3");
        assert!(!task.verify(&p, "(25-3)*2+"), "syntax");
        let q = countdown_problem(&[7, 2, 3, 5], 5);
        assert_eq!(
            countdown_check("7/2*3-5", &q.numbers, 5),
            Err(CountdownError::InexactDivision)
        );
        assert!(!task.verify(&q, "7/2+3-2"));
        assert!(task.verify(&q, "7-2"));
        assert_eq!(
            countdown_check("7/(2-2)", &[7, 2, 2], 0),
            Err(CountdownError::InexactDivision)
        );
        assert_eq!(
            countdown_check("7+7", &[7, 2], 14),
            Err(CountdownError::NumberNotAvailable(7))
        );
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(matches!(
            countdown_check(&deep, &[1], 1),
            Err(CountdownError::Syntax(_))
        ));
    }

    #[test]
    fn problems_are_rebuilt_from_their_prompts() {
        for task in BuiltinTask::ALL {
            for difficulty in 0..=MAX_DIFFICULTY {
                for index in 0..40 {
                    let problem = task.problem_with(11, index, difficulty);
                    let rebuilt = task.problem_from_prompt(&problem.prompt).expect("rebuilt");
                    assert_eq!(rebuilt.target, problem.target, "{}", problem.prompt);
                    assert_eq!(rebuilt.numbers, problem.numbers, "{}", problem.prompt);
                    if task != BuiltinTask::Countdown {
                        assert_eq!(rebuilt.answer, problem.answer, "{}", problem.prompt);
                    }
                    assert!(task.verify(&rebuilt, &problem.answer), "{}", problem.prompt);
                }
            }
        }
        assert!(
            BuiltinTask::Countdown
                .problem_from_prompt("12+3=")
                .is_none()
        );
        assert!(
            BuiltinTask::Arithmetic
                .problem_from_prompt("Make 4 with 1, 3.")
                .is_none()
        );
        assert!(
            BuiltinTask::LinearEquation
                .problem_from_prompt("Solve 0x+1=1.")
                .is_none()
        );
    }

    #[test]
    fn names_round_trip() {
        for task in BuiltinTask::ALL {
            assert_eq!(BuiltinTask::from_name(task.name()), Some(task));
            let json = serde_json::to_string(&task).expect("serialize");
            assert_eq!(json, format!("\"{}\"", task.name()));
        }
        assert_eq!(BuiltinTask::from_name("nope"), None);
    }
}
