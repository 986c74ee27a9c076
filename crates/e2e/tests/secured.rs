//! The whole system on a NATS server secured by the generated authorization
//! (`contracts::topology::nats_config`): every service process connects as its own user,
//! allowed only the subjects it uses, and a checkout still goes all the way through — so the
//! permissions are enough for everything the services really do (events, commands, replies,
//! queries, consumers, acks). The monolith does the same as the `mallbots` user.

use contracts::topology;
use e2e::{Options, System, scenarios};

/// A private `nats-server` (Debian's 2.9) with the generated configuration for `prefix`, and
/// the password of every user (random per test; a leading letter, since nats-server parses a
/// referenced variable as a configuration value).
async fn secured_server(prefix: &str) -> (testkit::NatsServer, Vec<(String, String)>) {
    let passwords: Vec<(String, String)> = topology::permissions(prefix)
        .into_iter()
        .map(|p| {
            (
                topology::password_var(&p.user),
                format!("pw{}", uuid::Uuid::new_v4().simple()),
            )
        })
        .collect();
    let server =
        testkit::NatsServer::start_with_config(&topology::nats_config(prefix), &passwords).await;
    (server, passwords)
}

#[tokio::test]
async fn checkout_across_separate_processes_each_with_its_own_nats_user() {
    let prefix = testkit::unique_prefix("e2e_sec_svc");
    let (nats, passwords) = secured_server(&prefix).await;
    // run-services hands each service its own user when NATS_PASSWORD_<SERVICE> is set.
    let mut options = Options::services()
        .on_nats(&nats.url())
        .with_env("NATS_PREFIX", &prefix);
    for (var, password) in &passwords {
        options = options.with_env(var, password);
    }
    let sys = System::start("e2e_sec_svc", options).await;
    scenarios::happy_path(&sys).await;
    sys.stop();
}

#[tokio::test]
async fn checkout_in_the_monolith_as_the_mallbots_user() {
    let prefix = testkit::unique_prefix("e2e_sec_mono");
    let (nats, passwords) = secured_server(&prefix).await;
    let password = passwords
        .iter()
        .find(|(var, _)| *var == topology::password_var(topology::MONOLITH_USER))
        .map(|(_, p)| p.clone())
        .expect("the monolith user has a password");
    let options = Options::monolith()
        .on_nats(&nats.url())
        .with_env("NATS_PREFIX", &prefix)
        .with_env("NATS_USER", topology::MONOLITH_USER)
        .with_env("NATS_PASSWORD", &password);
    let sys = System::start("e2e_sec_mono", options).await;
    scenarios::happy_path(&sys).await;
    sys.stop();
}
