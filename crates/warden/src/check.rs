//! `warden check`: the findings of `warden_gateway::check` printed, ok lines and warnings on
//! stdout, in order; the errors (the checks stop at the first) as the command's error, on
//! stderr, one per line.

use warden_gateway::check::{CheckLine, Level};

pub fn print(lines: &[CheckLine]) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for l in lines {
        if l.level == Level::Error {
            errors.push(l.text.as_str());
        } else {
            println!("{}", l.printed());
        }
    }
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("\n"));
    Ok(())
}
