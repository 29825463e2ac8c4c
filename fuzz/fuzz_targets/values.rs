//! The gate's values checks over arbitrary YAML values, with every step of the
//! Customer-Managed catalog (all its breaking rules at once). Never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lockstep::gate::{check_values, check_values_with, Step};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(values) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return;
    };
    let profile = lockstep::profile::built_in("prefect-customer-managed").expect("built in");
    let steps: Vec<Step> = profile
        .releases
        .lines
        .windows(2)
        .map(|w| Step {
            from_line: w[0].line.clone(),
            to_line: w[1].line.clone(),
            info: Some(w[1].clone()),
        })
        .collect();
    let findings = check_values(&steps, &values);
    for f in &findings {
        assert!(!f.problem.is_empty() && !f.fix.is_empty());
    }
    // As a render checks them: the user's values, and the same merged (as helm
    // merges) over the 1.2.0 chart's defaults.
    let mut merged: serde_yaml::Value = serde_yaml::from_str(include_str!(
        "../../examples/charts/prefect-cloud-1.2.0/values.yaml"
    ))
    .expect("chart defaults");
    lockstep::source::merge(&mut merged, values.clone());
    let _ = check_values_with(&steps, &values, &merged);
});
