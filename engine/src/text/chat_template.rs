//! Chat templates (Jinja, as in `tokenizer_config.json`, `chat_template.jinja` or GGUF metadata)
//! rendered with minijinja the way transformers' `apply_chat_template` renders them: Python
//! string methods available, `raise_exception`, `strftime_now`, sandboxed (no file access).

use std::path::PathBuf;

use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;

use super::TextError;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template with the special-token strings it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    origin: PathBuf,
    /// The Jinja source, for export.
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    // Only the date parts templates use; the studio has no timezone database and needs none.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month_name = MONTHS[(month - 1) as usize];
    format
        .replace("%d", &format!("{day:02}"))
        .replace("%m", &format!("{month:02}"))
        .replace("%Y", &year.to_string())
        .replace("%B", month_name)
        .replace("%b", &month_name[..3])
}

impl ChatTemplate {
    /// Compiles `source`; `origin` names the file it came from in errors.
    pub fn new(
        source: &str,
        origin: PathBuf,
        bos_token: String,
        eos_token: String,
    ) -> Result<Self, TextError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        // transformers renders with trim_blocks and lstrip_blocks on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| TextError::ChatTemplate {
                path: origin.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            env,
            origin,
            source: source.to_string(),
            bos_token,
            eos_token,
        })
    }

    /// Renders the conversation, optionally opening the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TextError> {
        let err = |e: minijinja::Error| TextError::ChatTemplate {
            path: self.origin.clone(),
            message: e.to_string(),
        };
        let template = self.env.get_template("chat").map_err(err)?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_like_transformers() {
        let t = ChatTemplate::new(CHATML, "t".into(), String::new(), "<|im_end|>".into())
            .expect("compiles");
        let out = t.render(&[ChatMessage::user("Hi")], true).expect("renders");
        assert_eq!(
            out,
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let src = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ messages[0].content.strip().upper() }}";
        let t = ChatTemplate::new(src, "tpl.jinja".into(), String::new(), String::new())
            .expect("compiles");
        assert_eq!(
            t.render(&[ChatMessage::user("  hi ")], false)
                .expect("renders"),
            "HI"
        );
        let sys = ChatMessage {
            role: "system".into(),
            content: "x".into(),
        };
        let e = t.render(&[sys], false).expect_err("raises").to_string();
        assert!(
            e.contains("first must be user") && e.contains("tpl.jinja"),
            "{e}"
        );
    }

    #[test]
    fn bad_template_names_file() {
        let e = ChatTemplate::new(
            "{% for %}",
            "x/tokenizer_config.json".into(),
            String::new(),
            String::new(),
        )
        .expect_err("syntax error")
        .to_string();
        assert!(e.contains("x/tokenizer_config.json"), "{e}");
    }
}
