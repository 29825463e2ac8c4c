//! Reading a profile: parsing its YAML and checking what serde cannot (names, commands,
//! release lines, annotation keys, image expressions), and its YAML form for
//! `lockstep profiles show`.
//!
//! It must not choose a profile for a chart nor look at rendered manifests.

use super::{is_dns_label, parse_line, Profile, UpgradeRule, MAX_STEP_NAME};
use anyhow::{bail, Context, Result};

impl Profile {
    /// Parses and checks a profile document; `origin` names it in errors.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Profile> {
        let profile: Profile = crate::guard::yaml(text, "profile").with_context(|| {
            format!("{origin} is not a valid lockstep profile; `lockstep profiles show generic` prints a valid starting point")
        })?;
        profile
            .check()
            .with_context(|| format!("profile {origin}"))?;
        Ok(profile)
    }

    /// Checks what serde cannot: names, commands, release lines, keys. The checks run in
    /// this order, so the first problem reported is always the same one.
    fn check(&self) -> Result<()> {
        self.check_steps()?;
        self.check_releases()?;
        for key in self.job.pod_annotations.keys() {
            if !crate::guard::qualified_name(key) {
                bail!(
                    "job.podAnnotations key {key:?} is not a valid annotation key ([PREFIX/]NAME: NAME at most 63 of a-z, A-Z, 0-9, '.', '_', '-', PREFIX a DNS subdomain)"
                );
            }
        }
        self.check_jumps_and_stops()
    }

    /// Migrations and post-rollout steps: named, unique, with a command.
    fn check_steps(&self) -> Result<()> {
        if self.migrations.is_empty() {
            bail!("declares no migrations: add at least one under `migrations:`");
        }
        let mut names = std::collections::BTreeSet::new();
        for m in self.migrations.iter().chain(&self.post_rollout) {
            if !is_dns_label(&m.name) || m.name.len() > 20 {
                bail!(
                    "migration name {:?} must be a lower-case DNS label of at most 20 characters",
                    m.name
                );
            }
            if !names.insert(m.name.as_str()) {
                bail!("two steps are named {:?}: each needs its own name", m.name);
            }
            if m.command.is_empty() {
                bail!("migration {:?} has an empty command", m.name);
            }
            if self.post_rollout.iter().any(|p| std::ptr::eq(p, m))
                && (!m.first_install.is_empty() || !m.downgrade.is_empty())
            {
                bail!(
                    "post-rollout step {:?}: firstInstall and downgrade belong to migrations; a post-rollout step has one command",
                    m.name
                );
            }
            if let Some(image) = &m.runs.image {
                check_image_expression(image)
                    .with_context(|| format!("migration {:?}: runs.image", m.name))?;
            }
        }
        Ok(())
    }

    /// Release lines and their one-time steps.
    fn check_releases(&self) -> Result<()> {
        for l in &self.releases.lines {
            let (_, minor) = parse_line(&l.line)
                .with_context(|| format!("release line {:?} must be MAJOR.MINOR", l.line))?;
            if self.releases.rule == UpgradeRule::Calver && !(1..=12).contains(&minor) {
                bail!(
                    "release line {:?}: `rule: calver` lines are YEAR.MONTH (month 1 to 12)",
                    l.line
                );
            }
            // A one-time step's name is its Job's suffix and its container's name.
            for one in &l.one_time {
                if !is_dns_label(&one.name) || one.name.len() > MAX_STEP_NAME {
                    bail!(
                        "one-time step name {:?} (release line {}) must be a lower-case DNS label of at most {MAX_STEP_NAME} characters: it names the step's Job and container",
                        one.name, l.line
                    );
                }
                if one.command.is_empty() {
                    bail!("one-time step {:?} has an empty command", one.name);
                }
            }
        }
        Ok(())
    }

    /// Jumps name release lines, hard stops name versions, and a catalog lists lines.
    fn check_jumps_and_stops(&self) -> Result<()> {
        for j in &self.releases.jumps {
            for l in [&j.from, &j.to] {
                parse_line(l).with_context(|| {
                    format!(
                        "jump {} → {}: {l:?} must be a release line MAJOR.MINOR",
                        j.from, j.to
                    )
                })?;
            }
        }
        for h in &self.releases.hard_stops {
            if crate::gate::parse_version(&h.version).is_none() {
                bail!("hard stop {:?} is not a version (e.g. 24.8.0)", h.version);
            }
        }
        if matches!(
            self.releases.rule,
            UpgradeRule::Catalog | UpgradeRule::Calver
        ) && self.releases.lines.is_empty()
        {
            bail!("uses `rule: catalog` or `rule: calver` but lists no release lines");
        }
        Ok(())
    }

    /// The profile as the YAML `lockstep profiles show` prints.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("a profile always serializes")
    }
}

/// The placeholders a `runs.image` expression may use.
const IMAGE_PLACEHOLDERS: &[&str] = &["{api.repository}", "{api.tag}", "{api.digest}", "{version}"];

fn check_image_expression(image: &str) -> Result<()> {
    let mut rest = image.to_owned();
    for p in IMAGE_PLACEHOLDERS {
        rest = rest.replace(p, "");
    }
    if rest.contains('{') || rest.contains('}') {
        bail!(
            "{image:?} has an unknown placeholder; known: {}",
            IMAGE_PLACEHOLDERS.join(", ")
        );
    }
    if image.trim().is_empty() || image.contains(char::is_whitespace) {
        bail!("{image:?} is not an image reference");
    }
    Ok(())
}
