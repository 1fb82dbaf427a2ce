//! DataFusion's view of the replicated catalog: catalog `lakehouse`, schema
//! `public` (one schema per bucket later), a table per catalog table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use lakehouse_catalog_raft::Catalog;

pub const CATALOG_NAME: &str = "lakehouse";
pub const DEFAULT_SCHEMA: &str = "public";

#[derive(Debug, Clone)]
pub struct LakehouseCatalogProvider {
    schema: Arc<LakehouseSchemaProvider>,
}

impl LakehouseCatalogProvider {
    pub fn new(catalog: Catalog) -> Self {
        Self {
            schema: Arc::new(LakehouseSchemaProvider { catalog }),
        }
    }
}

impl CatalogProvider for LakehouseCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        vec![DEFAULT_SCHEMA.to_string()]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        (name == DEFAULT_SCHEMA).then(|| Arc::clone(&self.schema) as Arc<dyn SchemaProvider>)
    }
}

#[derive(Debug)]
struct LakehouseSchemaProvider {
    catalog: Catalog,
}

#[async_trait]
impl SchemaProvider for LakehouseSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        self.catalog.tables().into_iter().map(|t| t.name).collect()
    }

    /// The current version's files, pinned now: a commit during the query is not seen.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = self.catalog.table(name) else {
            return Ok(None);
        };
        let Some(version) = table.current() else {
            return Ok(None);
        };
        let bucket = self.catalog.bucket();
        let urls = version
            .files
            .iter()
            .map(|file| {
                if file.object.bucket != bucket.name() {
                    return Err(DataFusionError::Plan(format!(
                        "table `{name}` has a file in bucket `{}`, which this node does not serve",
                        file.object.bucket
                    )));
                }
                ListingTableUrl::parse(bucket.url_of(&file.object.key))
            })
            .collect::<Result<Vec<_>>>()?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_collect_stat(true);
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(Arc::new(version.schema.clone()));
        Ok(Some(Arc::new(ListingTable::try_new(config)?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog.table(name).is_some()
    }
}
