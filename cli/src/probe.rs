//! `wxthunk probe`: the policy report as a table or as JSON.

use wxthunk::StrategySetting;

pub fn run(as_json: bool) {
    let policy = wxthunk::probe();
    if as_json {
        println!("{}", policy.to_json());
    } else {
        print!("{policy}");
    }
}

/// `probe --check`: `Err` naming every reason this process cannot use
/// wxthunk as it is configured (`code`: written code too).
pub fn health(code: bool) -> Result<(), Box<dyn std::error::Error>> {
    let policy = wxthunk::probe();
    let mut failed = Vec::new();
    match &policy.strategy_setting {
        StrategySetting::Invalid { .. } => failed.push(format!(
            "{}: {}",
            wxthunk::STRATEGY_VAR,
            policy.strategy_setting
        )),
        StrategySetting::Forced(s) if !policy.allows(*s) => failed.push(format!(
            "{} forces {s}, which does not work here: {}",
            wxthunk::STRATEGY_VAR,
            policy.check(*s)
        )),
        _ => {}
    }
    if policy.thunk_strategy.is_none() {
        failed.push("no strategy for thunks works here".into());
    }
    if code && policy.block_strategy.is_none() {
        failed.push("no strategy for written code works here".into());
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(format!("health check failed: {}", failed.join("; ")).into())
}
