//! The same scenarios against every service as its own process (`run-services`), with two
//! copies of baskets and of the order saga competing for their messages.

use e2e::{Options, System, scenarios};

#[tokio::test]
async fn happy_path_across_separate_processes() {
    let sys = System::start("e2e_svc_happy", Options::services()).await;
    scenarios::happy_path(&sys).await;
    sys.stop();
}

#[tokio::test]
async fn unauthorized_customer_across_separate_processes() {
    let sys = System::start("e2e_svc_cust", Options::services()).await;
    scenarios::customer_not_authorized(&sys).await;
}

#[tokio::test]
async fn unconfirmed_payment_across_separate_processes() {
    let sys = System::start("e2e_svc_pay", Options::services()).await;
    scenarios::payment_not_confirmed(&sys).await;
}

#[tokio::test]
async fn step_deadline_across_separate_processes() {
    let options = Options::services()
        .with_env(
            "SERVICES",
            "stores,customers,baskets,ordering,depot,notifications,search,cosec",
        )
        .with_env("SAGA_STEP_TIMEOUT", "2s");
    let sys = System::start("e2e_svc_deadline", options).await;
    scenarios::step_deadline(&sys).await;
}

#[tokio::test]
async fn customer_cancels_across_separate_processes() {
    let options = Options::services()
        .with_env(
            "SERVICES",
            "stores,customers,baskets,ordering,depot,notifications,search,cosec",
        )
        .with_env("SAGA_STEP_TIMEOUT", "120s");
    let sys = System::start("e2e_svc_cancel", options).await;
    scenarios::customer_cancels(&sys).await;
}

#[tokio::test]
async fn sigterm_under_load_then_restart_of_every_process() {
    let mut sys = System::start("e2e_svc_restart", Options::services()).await;
    scenarios::sigterm_under_load_then_restart(&mut sys).await;
}
