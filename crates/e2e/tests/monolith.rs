//! The end-to-end scenarios against the `mallbots` monolith started as a real process.

use e2e::{Options, System, scenarios};

#[tokio::test]
async fn happy_path_from_checkout_to_completed_order() {
    let sys = System::start("e2e_mono_happy", Options::monolith()).await;
    scenarios::happy_path(&sys).await;
    sys.stop();
}

#[tokio::test]
async fn unauthorized_customer_gets_the_order_rejected() {
    let sys = System::start("e2e_mono_cust", Options::monolith()).await;
    scenarios::customer_not_authorized(&sys).await;
}

#[tokio::test]
async fn unconfirmed_payment_cancels_the_list_and_rejects_the_order() {
    let sys = System::start("e2e_mono_pay", Options::monolith()).await;
    scenarios::payment_not_confirmed(&sys).await;
}

#[tokio::test]
async fn a_step_without_replier_times_out_and_compensates() {
    let options = Options::monolith()
        .with_env(
            "MALLBOTS_MODULES",
            "stores,customers,baskets,ordering,depot,notifications,search,cosec",
        )
        .with_env("SAGA_STEP_TIMEOUT", "2s");
    let sys = System::start("e2e_mono_deadline", options).await;
    scenarios::step_deadline(&sys).await;
}

#[tokio::test]
async fn a_customer_cancels_a_pending_order() {
    let options = Options::monolith()
        .with_env(
            "MALLBOTS_MODULES",
            "stores,customers,baskets,ordering,depot,notifications,search,cosec",
        )
        .with_env("SAGA_STEP_TIMEOUT", "120s");
    let sys = System::start("e2e_mono_cancel", options).await;
    scenarios::customer_cancels(&sys).await;
}

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_work_and_a_restart_loses_nothing() {
    let mut sys = System::start("e2e_mono_restart", Options::monolith()).await;
    scenarios::sigterm_under_load_then_restart(&mut sys).await;
}
