// One general-purpose v2 account for everything the app stores: the Functions
// host (AzureWebJobsStorage: locks, blob-trigger receipts and queues), the Flex
// deployment package, the dataset container (DATASET_STORAGE), the app's own
// outputs (WORK_CONTAINER) and the run ledger table. One account keeps the
// roles and the Event Grid source in one place; DATASET_STORAGE may point at another account later without code
// changes. Shared keys are off: every client authenticates with Entra ID.

param name string
param location string
param tags object
param deploymentContainerName string
param datasetContainerName string
param workContainerName string
param runTableName string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: default action Allow: the Flex app runs without a virtual network here, and Azure ML serverless jobs read the datasets in place; access is Entra-only (no shared keys, no anonymous blobs)
  // checkov:skip=CKV_AZURE_206: locally redundant on purpose: datasets are re-uploadable inputs, the ledger is rebuilt from Azure ML state; GRS doubles the storage bill
  // checkov:skip=CKV_AZURE_59: public endpoint stays on for the same reason as CKV_AZURE_35 (no virtual network in this template)
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// The Flex Consumption deployment package (read by the platform with the app's identity).
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Where datasets are dropped (DATASET_CONTAINER): the only container the blob
// trigger's Event Grid subscription listens to (scripts/postdeploy.sh).
resource datasetContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: datasetContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The app's own outputs (WORK_CONTAINER): reports and the training/validation
// parts its data assets point at. Apart from the datasets so that its writes
// never wake the blob trigger.
resource workContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: workContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableServices 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// The run ledger (RUN_TABLE). The app also creates it if missing.
resource runTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableServices
  name: runTableName
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
output datasetContainerName string = datasetContainer.name
output workContainerName string = workContainer.name
output runTableName string = runTable.name
