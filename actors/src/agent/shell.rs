//! Turning an argv into the one command line a sandbox's `/bin/sh -c` runs.

/// Joins `argv` into a shell command line, single-quoting each element that needs it.
pub fn join(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| quote(arg))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `arg` as the shell reads it back: as is when it has only safe characters, else in single
/// quotes (a quote inside written as `'\''`).
pub fn quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        let argv = ["python3", "-c", "print('hi')", "", "--prompt=a b"].map(String::from);
        assert_eq!(
            join(&argv),
            r#"python3 -c 'print('\''hi'\'')' '' '--prompt=a b'"#
        );
    }
}
