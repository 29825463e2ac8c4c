//! One scenario: its namespace, PostgreSQL database and role, Redis database number, the
//! Secrets the chart reads (the "external" database URL and Redis password, created as a DBA
//! would), and the helm it drives. Everything a scenario checks is read from the real thing:
//! helm's release status, the record ConfigMap, the database (psql), the Deployment, and the
//! pod runner's log of which Job containers ran, in which order, with which exit code.

#![allow(dead_code)]

use crate::harness::{env, Env};
use std::process::Output;

pub const PREFECT_SERVER: &str = "examples/charts/prefect-server";
/// Alembic heads of the PostgreSQL migrations shipped with each Prefect release (read from
/// a database migrated by that release's `prefect server database upgrade -y`).
pub const HEAD_3_7_8: &str = "bad1e352c597";
pub const HEAD_3_8_3: &str = "50737cdaee36";

pub struct Scenario {
    pub env: &'static Env,
    pub ns: String,
    pub db: String,
    pub role: String,
    pub release: String,
    pub major: u8,
    redis_db: u32,
    transcript: std::sync::Mutex<Vec<String>>,
}

impl Scenario {
    /// A fresh namespace and database for scenario `name` under helm `major`; None when no
    /// cluster is configured (one line said so) or the scenario needs the pod runner and an
    /// existing cluster was given.
    pub fn new(name: &str, major: u8) -> Option<Scenario> {
        let env = env()?;
        if !env.runner() {
            // Once per run, and past libtest's capture (eprintln! would be hidden).
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "cluster e2e: every scenario skipped on the LOCKSTEP_E2E_KUBECONFIG cluster: they read the pod runner's log, which only a LOCKSTEP_KUBE_BIN control plane starts"
                );
            });
            return None;
        }
        let ns = format!("{name}-h{major}");
        let db = ns.replace('-', "_");
        let s = Scenario {
            env,
            role: format!("{db}_app"),
            db,
            release: "prefect".into(),
            major,
            redis_db: env.next_redis_db(),
            transcript: Default::default(),
            ns,
        };
        env.kubectl_ok(&["create", "namespace", &s.ns]);
        env.psql_ok("postgres", &format!("CREATE ROLE {} LOGIN", s.role));
        env.psql_ok(
            "postgres",
            &format!("CREATE DATABASE {} OWNER {}", s.db, s.role),
        );
        s.secrets();
        Some(s)
    }

    /// The database URL as a DBA would hand it over: a cluster DNS name, as in a real cluster.
    fn database_url(&self) -> String {
        format!(
            "postgresql+asyncpg://{}@pg.data.svc.cluster.local:{}/{}",
            self.role, self.env.pg_port, self.db
        )
    }

    /// A generic Secret `name` with `data` in the scenario's namespace.
    fn secret(&self, name: &str, data: &[(&str, &str)]) {
        let mut args: Vec<String> = ["-n", &self.ns, "create", "secret", "generic", name]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(data.iter().map(|(k, v)| format!("--from-literal={k}={v}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.env.kubectl_ok(&args);
    }

    /// The Secrets the prefect-server values point at (prefect-db: url; prefect-redis:
    /// redis-password).
    fn secrets(&self) {
        self.secret("prefect-db", &[("url", &self.database_url())]);
        self.secret(
            "prefect-redis",
            &[("redis-password", &self.env.redis_password)],
        );
    }

    /// The Secrets the Customer-Managed example values name: prefect-cloud-database (nebula,
    /// orion, events: here one database for all three, so the steps' order is one table's)
    /// and prefect-okta-client.
    pub fn cloud_secrets(&self) {
        let url = self.database_url();
        self.secret(
            "prefect-cloud-database",
            &[("nebula", &url), ("orion", &url), ("events", &url)],
        );
        self.secret("prefect-okta-client", &[("client-secret", "e2e")]);
    }

    /// `helm lockstep VERB` of the Customer-Managed chart `release` with its example values.
    pub fn prefect_cloud(&self, verb: &str, release: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "-f".to_owned(),
            format!("examples/values/prefect-cloud/values-{release}.yaml"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.lockstep(
            verb,
            &format!("examples/charts/prefect-cloud-{release}"),
            &args,
        )
    }

    /// The steps the prefect-cloud stand-in recorded in the database, in order.
    pub fn steps(&self) -> Vec<String> {
        let exists = self.env.psql_ok(
            &self.db,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'e2e_steps'",
        );
        if exists != "1" {
            return vec![];
        }
        self.env
            .psql_ok(&self.db, "SELECT step FROM e2e_steps ORDER BY id")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `lockstep argocd generate` for prefect-server at `version`, run as argocd-cmp-server
    /// runs it: in the app directory of a repository (a copy of the chart beside it), with
    /// the app's env, helm 4. `phase` is lockstep.yaml's `phase`. Returns the documents.
    pub fn argocd_generate(&self, version: &str, phase: &str) -> Vec<serde_yaml::Value> {
        let db = "postgresql: {enabled: false}\n\
                  externalDatabase: {existingSecret: prefect-db, connectionStringSecretKey: url}\n";
        self.argocd_generate_with(version, phase, db)
    }

    /// [`Self::argocd_generate`] with `database` (values YAML) choosing the database: the
    /// external one, or the chart's bundled PostgreSQL (`postgresql: {enabled: true}`).
    pub fn argocd_generate_with(
        &self,
        version: &str,
        phase: &str,
        database: &str,
    ) -> Vec<serde_yaml::Value> {
        let repo_dir = self.env.dir.join(format!("argo-{}", self.ns));
        let app = repo_dir.join("apps/prefect");
        if !repo_dir.join("charts/prefect-server").exists() {
            std::fs::create_dir_all(repo_dir.join(".git")).unwrap();
            std::fs::create_dir_all(repo_dir.join("charts")).unwrap();
            std::fs::create_dir_all(&app).unwrap();
            let o = std::process::Command::new("cp")
                .arg("-R")
                .arg(crate::common::repo().join(PREFECT_SERVER))
                .arg(repo_dir.join("charts/prefect-server"))
                .output()
                .unwrap();
            assert!(o.status.success());
        }
        // A values file, not `set:` (which passes strings: "false" would be true to the chart).
        std::fs::write(
            app.join("values.yaml"),
            format!(
                "global: {{prefect: {{image: {{prefectTag: \"{version}-python3.11\"}}}}}}\n\
                 {database}\
                 backgroundServices:\n  runAsSeparateDeployment: true\n  messaging:\n    redis: \
                 {{host: redis.data.svc, port: {}, db: {}, existingSecret: prefect-redis}}\n",
                self.env.redis_port, self.redis_db
            ),
        )
        .unwrap();
        std::fs::write(
            app.join("lockstep.yaml"),
            format!(
                "chart: ../../charts/prefect-server\nrelease: {}\nnamespace: {}\nprofile: prefect-server\nversion: {version}\nphase: {phase}\nvalues: [values.yaml]\n",
                self.release, self.ns
            ),
        )
        .unwrap();
        self.run_argocd_generate(&app, &format!("{version}, {phase}"))
    }

    /// `lockstep argocd generate` for the Customer-Managed chart at `release` (a copy of
    /// examples/charts/prefect-cloud-RELEASE and its example values in a repository), with
    /// `lockstep.lock` saying `deployed` (as `lockstep bump` writes it) and lockstep.yaml's
    /// `phase`. Returns the documents.
    pub fn argocd_generate_cloud(
        &self,
        release: &str,
        deployed: &str,
        phase: &str,
    ) -> Vec<serde_yaml::Value> {
        let repo_dir = self.env.dir.join(format!("argo-cloud-{}", self.ns));
        let app = repo_dir.join("apps/cloud");
        let chart = format!("prefect-cloud-{release}");
        std::fs::create_dir_all(repo_dir.join(".git")).unwrap();
        std::fs::create_dir_all(repo_dir.join("charts")).unwrap();
        std::fs::create_dir_all(&app).unwrap();
        if !repo_dir.join("charts").join(&chart).exists() {
            let o = std::process::Command::new("cp")
                .arg("-R")
                .arg(crate::common::repo().join("examples/charts").join(&chart))
                .arg(repo_dir.join("charts").join(&chart))
                .output()
                .unwrap();
            assert!(o.status.success());
        }
        std::fs::copy(
            crate::common::repo().join(format!(
                "examples/values/prefect-cloud/values-{release}.yaml"
            )),
            app.join("values.yaml"),
        )
        .unwrap();
        std::fs::write(
            app.join("lockstep.yaml"),
            format!(
                "chart: ../../charts/{chart}\nrelease: {}\nnamespace: {}\nprofile: prefect-customer-managed\nversion: {release}\nphase: {phase}\nvalues: [values.yaml]\n",
                self.release, self.ns
            ),
        )
        .unwrap();
        std::fs::write(
            app.join("lockstep.lock"),
            format!("deployed:\n  version: {deployed}\n"),
        )
        .unwrap();
        self.run_argocd_generate(
            &app,
            &format!("prefect-cloud {release} from {deployed}, {phase}"),
        )
    }

    /// Runs `lockstep argocd generate` in the app directory `app` as argocd-cmp-server runs
    /// it (cleared env, the app's ARGOCD_ variables, helm 4) and returns the documents.
    fn run_argocd_generate(&self, app: &std::path::Path, what: &str) -> Vec<serde_yaml::Value> {
        let helm = self.env.dir.join("argo-helm");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(["argocd", "generate"])
            .current_dir(app)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &helm)
            .env("HELM_BIN", crate::common::tool("helm4"))
            .env("HELM_CACHE_HOME", helm.join("cache"))
            .env("HELM_CONFIG_HOME", helm.join("config"))
            .env("HELM_DATA_HOME", helm.join("data"))
            .env("ARGOCD_APP_NAME", &self.release)
            .env("ARGOCD_APP_NAMESPACE", &self.ns)
            .env(
                "ARGOCD_APP_SOURCE_PATH",
                format!("apps/{}", app.file_name().unwrap().to_string_lossy()),
            )
            .env("ARGOCD_APP_PARAMETERS", "null")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        self.note(format!(
            "$ lockstep argocd generate ({what}) -> {:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
        assert!(
            out.status.success(),
            "argocd generate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        crate::common::docs(&text)
    }

    /// `--set` flags for prefect-server at Prefect `version`: external PostgreSQL and Redis,
    /// background services in their own Deployment (the production shape).
    pub fn prefect_server_values(&self, version: &str) -> Vec<String> {
        [
            format!("global.prefect.image.prefectTag={version}-python3.11"),
            "postgresql.enabled=false".into(),
            "externalDatabase.existingSecret=prefect-db".into(),
            "externalDatabase.connectionStringSecretKey=url".into(),
            "backgroundServices.runAsSeparateDeployment=true".into(),
            "backgroundServices.messaging.redis.host=redis.data.svc".into(),
            format!(
                "backgroundServices.messaging.redis.port={}",
                self.env.redis_port
            ),
            format!("backgroundServices.messaging.redis.db={}", self.redis_db),
            "backgroundServices.messaging.redis.existingSecret=prefect-redis".into(),
        ]
        .into_iter()
        .flat_map(|s| ["--set".to_owned(), s])
        .collect()
    }

    /// `helm lockstep VERB RELEASE CHART -n NS ARGS...` with the real helm.
    pub fn lockstep(&self, verb: &str, chart: &str, args: &[String]) -> Output {
        let mut all: Vec<String> = vec![
            "lockstep".into(),
            verb.into(),
            self.release.clone(),
            chart.into(),
            "-n".into(),
            self.ns.clone(),
        ];
        all.extend(args.iter().cloned());
        self.helm(&all)
    }

    /// Installs or upgrades prefect-server at `version` and returns helm's output.
    pub fn prefect_server(&self, verb: &str, version: &str, extra: &[&str]) -> Output {
        let mut args = self.prefect_server_values(version);
        args.extend(extra.iter().map(|s| s.to_string()));
        self.lockstep(verb, PREFECT_SERVER, &args)
    }

    /// Any helm command (the release's namespace is the caller's to pass).
    pub fn helm<S: AsRef<str>>(&self, args: &[S]) -> Output {
        let args: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
        self.env.check_runner();
        let t0 = std::time::Instant::now();
        let out = self.env.helm(self.major).args(&args).output().unwrap();
        self.note(format!(
            "$ helm{} {} -> {:?} in {:.1}s\n{}{}",
            self.major,
            args.join(" "),
            out.status.code(),
            t0.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        out
    }

    pub fn note(&self, s: String) {
        self.transcript.lock().unwrap().push(s);
    }

    /// Asserts helm succeeded; returns its combined output.
    pub fn ok(&self, o: &Output, what: &str) -> String {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success(),
            "{what} failed ({:?}):\n{text}",
            o.status
        );
        text
    }

    /// The status of the release's newest revision (deployed, failed, ...).
    pub fn status(&self) -> String {
        let o = self.helm(&["status", &self.release, "-n", &self.ns, "-o", "json"]);
        let text = self.ok(&o, "helm status");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("helm status -o json: {e}\n{text}"));
        v["info"]["status"].as_str().unwrap_or_default().to_owned()
    }

    /// Every revision as (number, status, app version).
    pub fn history(&self) -> Vec<(u64, String)> {
        let o = self.helm(&["history", &self.release, "-n", &self.ns, "-o", "json"]);
        self.ok(&o, "helm history");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["revision"].as_u64().unwrap(),
                    r["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The record ConfigMap's `release` (None: no record).
    pub fn record(&self) -> Option<String> {
        self.configmap_key(&format!("{}-lockstep", self.release), "release")
    }

    pub fn configmap_key(&self, name: &str, key: &str) -> Option<String> {
        let o = self
            .env
            .kubectl(&["-n", &self.ns, "get", "configmap", name, "-o", "json"]);
        if !o.status.success() {
            let e = String::from_utf8_lossy(&o.stderr);
            assert!(e.contains("NotFound"), "kubectl get configmap {name}: {e}");
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["data"][key].as_str().map(str::to_owned)
    }

    /// Sets the record's `release` as an operator would (kubectl patch).
    pub fn set_record(&self, release: &str) {
        self.env.kubectl_ok(&[
            "-n",
            &self.ns,
            "patch",
            "configmap",
            &format!("{}-lockstep", self.release),
            "--type=merge",
            "-p",
            &format!(r#"{{"data":{{"release":"{release}"}}}}"#),
        ]);
    }

    /// The database's alembic revision (None: no alembic_version table, an empty database).
    pub fn head(&self) -> Option<String> {
        let exists = self.env.psql_ok(
            &self.db,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alembic_version'",
        );
        (exists == "1").then(|| {
            self.env
                .psql_ok(&self.db, "SELECT version_num FROM alembic_version")
        })
    }

    /// Number of tables in the public schema.
    pub fn tables(&self) -> usize {
        self.env
            .psql_ok(
                &self.db,
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .parse()
            .unwrap()
    }

    /// A fingerprint of the whole schema and of the data the scenario wrote.
    pub fn schema_fingerprint(&self) -> String {
        self.env.psql_ok(
            &self.db,
            "SELECT md5(string_agg(table_name || '.' || column_name || ':' || data_type, ',' ORDER BY table_name, column_name)) FROM information_schema.columns WHERE table_schema = 'public'",
        )
    }

    /// The image of the server Deployment's first container, and its generation.
    pub fn deployment(&self, name: &str) -> (String, String) {
        let out = self.env.kubectl_ok(&[
            "-n",
            &self.ns,
            "get",
            "deployment",
            name,
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation}",
        ]);
        let (i, g) = out.split_once(' ').unwrap();
        (i.to_owned(), g.to_owned())
    }

    /// The Job containers the pod runner ran in this namespace, in order: (pod, container,
    /// exit code or None while running).
    pub fn runs(&self) -> Vec<Run> {
        self.env.check_runner();
        let mut runs: Vec<Run> = vec![];
        for line in self.env.runner_log(&self.ns) {
            let Some((pod, what)) = line.split_once(": ") else {
                continue;
            };
            let pod = pod.rsplit('/').next().unwrap().to_owned();
            if let Some(rest) = what.strip_prefix("run container ") {
                let c = rest.split(' ').next().unwrap().to_owned();
                runs.push(Run {
                    pod,
                    container: c,
                    exit: None,
                    output: vec![],
                });
            } else if let Some(rest) = what.strip_prefix("container ") {
                let mut it = rest.split(' ');
                let c = it.next().unwrap();
                if it.next() == Some("exited") {
                    let code: i32 = it.next().unwrap().parse().unwrap();
                    if let Some(r) = runs
                        .iter_mut()
                        .rev()
                        .find(|r| r.pod == pod && r.container == c)
                    {
                        r.exit = Some(code);
                    }
                }
            } else if let Some(l) = what.strip_prefix("  | ") {
                if let Some(r) = runs.iter_mut().rev().find(|r| r.pod == pod) {
                    r.output.push(l.to_owned());
                }
            }
        }
        runs
    }

    /// The containers that ran, as "container:exit" (exit `?` while running).
    pub fn run_summary(&self) -> Vec<String> {
        self.runs()
            .iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r.container,
                    r.exit.map(|c| c.to_string()).unwrap_or("?".into())
                )
            })
            .collect()
    }

    /// Inserts a flow and a variable through SQL, as a Prefect server would store them.
    pub fn write_data(&self, tag: &str) {
        self.env.psql_ok(
            &self.db,
            &format!("INSERT INTO flow (name) VALUES ('e2e-{tag}'); INSERT INTO variable (name, value) VALUES ('e2e-{tag}', '\"kept\"')"),
        );
    }

    pub fn data(&self) -> String {
        self.env.psql_ok(
            &self.db,
            "SELECT string_agg(f.name || '=' || v.value::text, ',' ORDER BY f.name) FROM flow f JOIN variable v ON v.name = f.name",
        )
    }
}

#[derive(Debug, Clone)]
pub struct Run {
    pub pod: String,
    pub container: String,
    pub exit: Option<i32>,
    pub output: Vec<String>,
}

impl Drop for Scenario {
    /// On failure: what helm said and what the pod runner did, to read beside the panic.
    /// On success: the namespace and database are removed.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("==== scenario {} (helm {}) ====", self.ns, self.major);
            for t in self.transcript.lock().unwrap().iter() {
                eprintln!("{t}");
            }
            eprintln!("---- pod runner ({}):", self.ns);
            for l in self.env.runner_log(&self.ns) {
                eprintln!("{l}");
            }
            eprintln!("(cluster files: {})", self.env.dir.display());
        } else {
            let _ = self
                .env
                .kubectl(&["delete", "namespace", &self.ns, "--wait=false"]);
        }
    }
}
