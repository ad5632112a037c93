//! `KEY=VALUE` files given with `--env-file` (e.g. `scripts/dev.env`): local
//! overrides applied on top of every function's stack environment.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Error;

/// Reads an env file: one `KEY=VALUE` per line, blank lines and `#` comments
/// skipped, an optional `export ` prefix, and matching single or double quotes
/// around the value removed.
pub fn load_env_file(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file("reading", path, e))?;
    parse_env_file(&text, path)
}

/// Parses env-file text; `path` only names the file in errors.
pub fn parse_env_file(text: &str, path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let mut vars = BTreeMap::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let fail = |message: &str| Error::EnvFile {
            path: path.to_owned(),
            line: index + 1,
            message: message.to_owned(),
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| fail("expected KEY=VALUE"))?;
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            return Err(fail("bad variable name"));
        }
        vars.insert(key.to_owned(), unquote(value.trim()).to_owned());
    }
    Ok(vars)
}

fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_comments_quotes_and_export() {
        let text = "# local overrides\n\nGROQ_BASE_URL=http://127.0.0.1:9001\nexport RUST_LOG=debug\nQUOTED=\"a b\"\nSINGLE='x=y'\n  SPACED = v  \nEMPTY=\n";
        let vars = parse_env_file(text, Path::new("dev.env")).unwrap();
        assert_eq!(vars["GROQ_BASE_URL"], "http://127.0.0.1:9001");
        assert_eq!(vars["RUST_LOG"], "debug");
        assert_eq!(vars["QUOTED"], "a b");
        assert_eq!(vars["SINGLE"], "x=y");
        assert_eq!(vars["SPACED"], "v");
        assert_eq!(vars["EMPTY"], "");
        assert_eq!(vars.len(), 6);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let err = parse_env_file("A=1\nnot a pair\n", Path::new("dev.env")).unwrap_err();
        assert_eq!(err.to_string(), "dev.env: line 2: expected KEY=VALUE");
        let err = parse_env_file("=1\n", Path::new("dev.env")).unwrap_err();
        assert_eq!(err.to_string(), "dev.env: line 1: bad variable name");
    }
}
