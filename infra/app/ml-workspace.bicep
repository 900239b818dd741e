// A new Azure ML workspace with what it requires: its own storage account, a
// key vault and an Application Insights resource (on the shared Log Analytics
// workspace). Used when no existing workspace is named (azureMlWorkspaceName).
// No compute cluster: fine-tuning runs on serverless compute
// (FINETUNE_INSTANCE_TYPES), whose jobs read data with the workspace's
// system-assigned identity, which is why that identity (not a cluster's) gets
// Storage Blob Data Reader on the dataset account (rbac.bicep).

param workspaceName string
param storageAccountName string
param keyVaultName string
param appInsightsName string
param logAnalyticsWorkspaceId string
param location string
param tags object

// Azure ML's own default storage (workspaceblobstore, run history, model
// artifacts). Its system datastores authenticate with account keys, so shared
// key access stays on here; the app's datasets live in the app's account.
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_43: the name is 'stml' plus a 13-character uniqueString token (lower-case letters and digits, 17 characters); checkov cannot evaluate the expression
  // checkov:skip=CKV_AZURE_35: Azure ML serverless compute and the managed online endpoints read it over the public endpoint (no virtual network in this template)
  // checkov:skip=CKV_AZURE_206: locally redundant: run artifacts are reproducible, GRS doubles their cost
  // checkov:skip=CKV_AZURE_59: public endpoint, as CKV_AZURE_35
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Access policies, not RBAC: Azure ML adds its own policy for the workspace
// identity when it creates the workspace. Purge protection stays off so that
// `azd down --purge` can remove the vault and its name can be reused.
resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_110: purge protection off so `azd down --purge` can delete the vault (soft delete stays on)
  // checkov:skip=CKV_AZURE_42: recoverable by soft delete; purge protection off as CKV_AZURE_110
  // checkov:skip=CKV_AZURE_109: Azure ML and its compute reach the vault over the public endpoint (no virtual network in this template)
  // checkov:skip=CKV_AZURE_189: public endpoint, as CKV_AZURE_109
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    accessPolicies: []
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// The workspace's own Application Insights (Azure ML requires one). Key
// authentication stays as Azure ML expects it; the app does not write here.
resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalyticsWorkspaceId
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' = {
  // checkov:skip=CKV_AZURE_243: no private endpoint: the app (Flex, no virtual network) calls the workspace's public API
  name: workspaceName
  location: location
  tags: tags
  kind: 'Default'
  sku: {
    name: 'Basic'
    tier: 'Basic'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    friendlyName: workspaceName
    storageAccount: storage.id
    keyVault: keyVault.id
    applicationInsights: appInsights.id
    publicNetworkAccess: 'Enabled'
    v1LegacyMode: false
  }
}

output name string = workspace.name
output id string = workspace.id
