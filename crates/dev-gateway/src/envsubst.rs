//! `${VAR:-default}` expansion of stack files, as faas-cli does before parsing
//! (`--envsubst`, on by default).

/// Expands variables in `text` with values from `lookup`.
///
/// Supported forms, following the envsubst library faas-cli uses:
/// `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:=default}` (default when unset
/// or empty), `${VAR-default}` and `${VAR=default}` (default when unset), and `$$`
/// for a literal `$`. Defaults are expanded themselves. An unset variable expands
/// to the empty string. A `$` not followed by a name or `{` is kept as is.
///
/// On failure returns the 1-based line of the bad expression and a message.
pub(crate) fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek().map(|&(_, next)| next) {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some('{') => {
                let line = line_of(text, index);
                let body_start = index + 2;
                let body_end = matching_brace(text, body_start).ok_or_else(|| {
                    (
                        line,
                        format!("unterminated `${{` in {:?}", excerpt(&text[index..])),
                    )
                })?;
                let body = &text[body_start..body_end];
                out.push_str(&expand_braced(body, lookup).map_err(|message| (line, message))?);
                while chars.peek().is_some_and(|&(i, _)| i <= body_end) {
                    chars.next();
                }
            }
            Some(next) if is_name_start(next) => {
                let start = index + 1;
                let mut end = start;
                while let Some(&(i, ch)) = chars.peek() {
                    if !is_name_char(ch) {
                        break;
                    }
                    end = i + ch.len_utf8();
                    chars.next();
                }
                out.push_str(&lookup(&text[start..end]).unwrap_or_default());
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

fn expand_braced(body: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let name_len = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let (name, operator_and_word) = body.split_at(name_len);
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(format!("bad variable name in `${{{body}}}`"));
    }
    let value = lookup(name);
    let (when_empty_too, word) = if let Some(word) = operator_and_word
        .strip_prefix(":-")
        .or_else(|| operator_and_word.strip_prefix(":="))
    {
        (true, word)
    } else if let Some(word) = operator_and_word
        .strip_prefix('-')
        .or_else(|| operator_and_word.strip_prefix('='))
    {
        (false, word)
    } else if operator_and_word.is_empty() {
        return Ok(value.unwrap_or_default());
    } else {
        return Err(format!(
            "unsupported substitution `${{{body}}}` (use ${{VAR}}, ${{VAR:-default}} or ${{VAR-default}})"
        ));
    };
    let use_default = match &value {
        None => true,
        Some(v) => when_empty_too && v.is_empty(),
    };
    if use_default {
        expand(word, lookup).map_err(|(_, message)| message)
    } else {
        Ok(value.unwrap_or_default())
    }
}

/// Byte index of the `}` closing a `${` whose body starts at `from`, honouring nesting.
fn matching_brace(text: &str, from: usize) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            b'\n' => return None,
            _ => {}
        }
        i += 1;
    }
    None
}

fn line_of(text: &str, index: usize) -> usize {
    text[..index].matches('\n').count() + 1
}

fn excerpt(text: &str) -> &str {
    let end = text.find('\n').unwrap_or(text.len()).min(40);
    let end = (0..=end)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    &text[..end]
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn expands_plain_and_braced_variables() {
        let lookup = env(&[("TAG", "1.2"), ("REG", "ghcr.io/x")]);
        assert_eq!(
            expand("image: ${REG}/embed:$TAG", &lookup).unwrap(),
            "image: ghcr.io/x/embed:1.2"
        );
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let lookup = env(&[("EMPTY", ""), ("SET", "v")]);
        assert_eq!(expand("${MISSING:-5m}", &lookup).unwrap(), "5m");
        assert_eq!(expand("${EMPTY:-5m}", &lookup).unwrap(), "5m");
        assert_eq!(expand("${SET:-5m}", &lookup).unwrap(), "v");
        assert_eq!(expand("${MISSING-d}", &lookup).unwrap(), "d");
        assert_eq!(expand("${EMPTY-d}", &lookup).unwrap(), "");
        assert_eq!(expand("${MISSING:=d}", &lookup).unwrap(), "d");
        assert_eq!(expand("${MISSING:-}", &lookup).unwrap(), "");
        assert_eq!(expand("${MISSING:-${SET}-x}", &lookup).unwrap(), "v-x");
        assert_eq!(
            expand("${MISSING:-http://a:1/b}", &lookup).unwrap(),
            "http://a:1/b"
        );
    }

    #[test]
    fn unset_without_default_is_empty_and_dollars_survive() {
        let lookup = env(&[]);
        assert_eq!(expand("a${NOPE}b$NOPE.c", &lookup).unwrap(), "ab.c");
        assert_eq!(
            expand("cost $5 and $$HOME", &lookup).unwrap(),
            "cost $5 and $HOME"
        );
        assert_eq!(expand("trailing $", &lookup).unwrap(), "trailing $");
        assert_eq!(expand("ünïcode ${NOPE:-é}", &lookup).unwrap(), "ünïcode é");
    }

    #[test]
    fn reports_bad_expressions_with_their_line() {
        let lookup = env(&[]);
        let (line, message) = expand("a: 1\nb: ${OPEN\n", &lookup).unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("unterminated"), "{message}");
        let (line, message) = expand("x\ny\nz: ${V^^}", &lookup).unwrap_err();
        assert_eq!(line, 3);
        assert!(message.contains("${V^^}"), "{message}");
        let (_, message) = expand("${1X}", &lookup).unwrap_err();
        assert!(message.contains("bad variable name"), "{message}");
    }
}
