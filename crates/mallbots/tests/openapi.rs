//! `/openapi.json` of the monolith: a valid OpenAPI 3 document that lists every route of
//! spec/api.md §2 (and ours), each with its operations, responses and path parameters; and the
//! browsable UI beside it.

use std::collections::BTreeSet;

use platform::Module;
use platform::testing::TestApp;
use reqwest::StatusCode;
use serde_json::Value;

/// A module as the document sees it: its paths, without starting it (no pools, no consumers:
/// the document does not depend on them, and the test stays light on the shared database).
struct DocOnly(Box<dyn Module>);

#[platform::async_trait]
impl Module for DocOnly {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    async fn start(&self, _ctx: platform::ModuleContext) -> anyhow::Result<axum::Router> {
        Ok(axum::Router::new())
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        self.0.openapi()
    }
}

fn modules() -> Vec<Box<dyn Module>> {
    let all: Vec<Box<dyn Module>> = vec![
        Box::new(baskets::BasketsModule::new()),
        Box::new(customers::CustomersModule::new()),
        Box::new(depot::DepotModule::new()),
        Box::new(notifications::NotificationsModule::default()),
        Box::new(ordering::OrderingModule::new()),
        Box::new(payments::PaymentsModule::new()),
        Box::new(stores::StoresModule::new()),
        Box::new(order_saga::OrderSagaModule::default()),
        Box::new(search::SearchModule::default()),
    ];
    all.into_iter()
        .map(|m| Box::new(DocOnly(m)) as Box<dyn Module>)
        .collect()
}

/// spec/api.md §2: the 36 routes of the original.
const SPEC_ROUTES: &[(&str, &str)] = &[
    ("post", "/api/stores"),
    ("get", "/api/stores"),
    ("get", "/api/stores/participating"),
    ("get", "/api/stores/{id}"),
    ("put", "/api/stores/{id}/participating"),
    ("delete", "/api/stores/{id}/participating"),
    ("put", "/api/stores/{id}/rebrand"),
    ("post", "/api/stores/{storeId}/products"),
    ("get", "/api/stores/{storeId}/products"),
    ("get", "/api/stores/products/{id}"),
    ("put", "/api/stores/products/{id}/rebrand"),
    ("put", "/api/stores/products/{id}/increasePrice"),
    ("put", "/api/stores/products/{id}/decreasePrice"),
    ("delete", "/api/stores/products/{id}"),
    ("post", "/api/baskets"),
    ("get", "/api/baskets/{id}"),
    ("delete", "/api/baskets/{id}"),
    ("put", "/api/baskets/{id}/addItem"),
    ("put", "/api/baskets/{id}/removeItem"),
    ("put", "/api/baskets/{id}/checkout"),
    ("post", "/api/customers"),
    ("get", "/api/customers/{id}"),
    ("put", "/api/customers/{id}/change-sms"),
    ("put", "/api/customers/{id}/enable"),
    ("put", "/api/customers/{id}/disable"),
    ("post", "/api/depot/shopping"),
    ("post", "/api/depot/shopping/{id}"),
    ("put", "/api/depot/shopping/{id}/assign"),
    ("put", "/api/depot/shopping/{id}/complete"),
    ("post", "/api/ordering"),
    ("get", "/api/ordering/{id}"),
    ("delete", "/api/ordering/{id}"),
    ("post", "/api/payments"),
    ("put", "/api/payments/invoices/{id}/pay"),
    ("post", "/api/search/orders"),
    ("get", "/api/search/orders/{id}"),
];

/// Our additions: reads the original lacked, and the host's endpoints.
const OUR_ROUTES: &[(&str, &str)] = &[
    ("get", "/api/depot/shopping/{id}"),
    ("get", "/api/notifications"),
    ("get", "/api/notifications/orders/{id}"),
    ("get", "/api/cosec/sagas/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/liveness"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// `/api/stores/{storeId}/products` → `/api/stores/{}/products`: parameter names may differ.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every `$ref` in `value`.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(r) = v.as_str() {
                        found.push(r.to_owned());
                    }
                } else {
                    refs(v, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_is_openapi_3_and_lists_every_route() {
    let app = TestApp::spawn("openapi", modules()).await;
    let response = reqwest::get(format!("{}/openapi.json", app.base))
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");

    // It parses as an OpenAPI document.
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_str(&text).expect("an OpenAPI document");
    assert!(!parsed.paths.paths.is_empty());
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3."), "OpenAPI 3.x, got {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    // Every path has operations, each with responses and its path parameters declared.
    let paths = doc["paths"].as_object().expect("paths");
    let mut listed = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item");
        let operations: Vec<(&String, &Value)> = item
            .iter()
            .filter(|(k, _)| METHODS.contains(&k.as_str()))
            .collect();
        assert!(!operations.is_empty(), "{path} has no operation");
        for (method, op) in operations {
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.contains_key("200"),
                "{method} {path}: no 200 response"
            );
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    assert!(
                        declared.contains(name),
                        "{method} {path}: path parameter {name} not declared"
                    );
                }
            }
            if let Some(id) = op["operationId"].as_str() {
                assert!(
                    operation_ids.insert(id.to_owned()),
                    "operationId {id} is not unique"
                );
            }
            listed.insert((method.clone(), shape(path)));
        }
    }

    // Every reference resolves.
    let mut found = Vec::new();
    refs(&doc, &mut found);
    for r in &found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} does not resolve"
        );
    }

    // Every route of the spec, and ours.
    let missing: Vec<String> = SPEC_ROUTES
        .iter()
        .chain(OUR_ROUTES)
        .filter(|(m, p)| !listed.contains(&((*m).to_owned(), shape(p))))
        .map(|(m, p)| format!("{} {p}", m.to_uppercase()))
        .collect();
    assert!(
        missing.is_empty(),
        "missing from /openapi.json: {missing:?}"
    );
    assert_eq!(SPEC_ROUTES.len(), 36);

    // A couple of schemas as the spec words them.
    let schemas = &doc["components"]["schemas"];
    let store = &schemas["stores.StoreDto"]["properties"];
    for field in ["id", "name", "location", "participating"] {
        assert!(store.get(field).is_some(), "Store.{field}: {store}");
    }
    let item = &schemas["baskets.ItemBody"]["properties"];
    for field in [
        "storeId",
        "productId",
        "storeName",
        "productName",
        "productPrice",
        "quantity",
    ] {
        assert!(item.get(field).is_some(), "BasketItem.{field}: {item}");
    }

    // The browsable UI.
    let ui = reqwest::get(format!("{}/swagger-ui/", app.base))
        .await
        .expect("GET /swagger-ui/");
    assert_eq!(ui.status(), StatusCode::OK);
    let html = ui.text().await.expect("html");
    assert!(html.contains("swagger"), "{html}");
    app.stop().await;
}
