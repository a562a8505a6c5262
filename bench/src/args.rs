//! Command-line parsing for every tool, over `lexopt`: each tool names its
//! own options; `--help` and errors are handled here, the same way for all.

use std::str::FromStr;

pub use lexopt::Parser;

/// Parses the process's arguments. `on_option` gets each option's name
/// (`"quick"` for `--quick`, `"n"` for `-n`) and the parser, to take a value
/// with [`value`]; it returns `Ok(false)` for a name it does not know.
/// `--help` prints `usage` and exits 0; a bad argument prints the error and
/// `usage` to stderr and exits 2.
pub fn parse(
    usage: &str,
    mut on_option: impl FnMut(&str, &mut Parser) -> Result<bool, lexopt::Error>,
) {
    let mut parser = Parser::from_env();
    if let Err(error) = parse_with(&mut parser, &mut on_option) {
        if error == "help" {
            print!("{usage}");
            std::process::exit(0);
        }
        eprintln!("error: {error}\n\n{usage}");
        std::process::exit(2);
    }
}

fn parse_with(
    parser: &mut Parser,
    on_option: &mut impl FnMut(&str, &mut Parser) -> Result<bool, lexopt::Error>,
) -> Result<(), String> {
    while let Some(arg) = parser.next().map_err(|error| error.to_string())? {
        let name = match arg {
            lexopt::Arg::Long("help") | lexopt::Arg::Short('h') => return Err("help".into()),
            lexopt::Arg::Long(name) => name.to_owned(),
            lexopt::Arg::Short(letter) => letter.to_string(),
            lexopt::Arg::Value(value) => return Err(format!("unexpected argument {value:?}")),
        };
        if !on_option(&name, parser).map_err(|error| format!("--{name}: {error}"))? {
            return Err(format!("unknown option --{name}"));
        }
    }
    Ok(())
}

/// The value of the option just seen, parsed as `T`.
pub fn value<T>(parser: &mut Parser) -> Result<T, lexopt::Error>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let text = parser.value()?.into_string()?;
    text.parse()
        .map_err(|error: T::Err| format!("{text:?}: {error}").into())
}

/// The options every measuring tool takes: `--quick` and `--rounds N`.
#[derive(Debug, Default)]
pub struct Common {
    pub quick: bool,
    rounds: Option<usize>,
}

impl Common {
    /// Takes `option` if it is one of these; `Ok(false)` otherwise.
    pub fn take(&mut self, option: &str, parser: &mut Parser) -> Result<bool, lexopt::Error> {
        match option {
            "quick" => self.quick = true,
            "rounds" => self.rounds = Some(value(parser)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `--rounds`, else `quick` rounds with `--quick` and `full` without.
    pub fn rounds(&self, quick: usize, full: usize) -> usize {
        self.rounds
            .unwrap_or(if self.quick { quick } else { full })
            .max(1)
    }

    /// `given`, else `quick` with `--quick` and `full` without.
    pub fn size<T>(&self, given: Option<T>, quick: T, full: T) -> T {
        given.unwrap_or(if self.quick { quick } else { full })
    }
}
