// The Function App on a Flex Consumption (FC1) plan: Python 3.11, one
// user-assigned identity for everything, identity-based connections only.
// On Flex the runtime comes from functionAppConfig.runtime, so
// FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION are not app settings,
// and there is no AzureWebJobsStorage connection string. tests/infra checks
// these settings against what shared/settings.py requires.

param name string
param planName string
param location string
param tags object
param identityName string
param hostStorageAccountName string
param deploymentContainerName string
param datasetStorageAccountName string
param appInsightsName string
param maximumInstanceCount int
param instanceMemoryMB int

// The app's own settings (see local.settings.example.json and the README).
param subscriptionId string
param workspaceResourceGroup string
param workspaceName string
param finetuneBaseModel string
param finetuneTask string
param finetuneInstanceTypes string
param finetuneCompute string
param finetuneExperiment string
param datasetContainerName string
param workContainerName string
param runTableName string
param endpointName string
param deploymentInstanceType string
param deploymentInstanceCount int
param eventsTopicEndpoint string
param eventsSource string

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' existing = {
  name: identityName
}

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource datasetStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: datasetStorageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: no zone redundancy: on Flex it is a per-region option that needs always-ready instances, billed while idle; this deployment scales to zero
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: public by design: the HTTP API (function keys) and Event Grid deliveries (extension system keys) come over the internet; no virtual network in this template
  // checkov:skip=CKV_AZURE_17: no client certificates: Event Grid webhook deliveries and API callers authenticate with function keys, not certificates
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero on purpose (idle cost ~0); the reconcile timer and Event Grid wake it
  // checkov:skip=CKV_AZURE_213: no platform health check on Flex Consumption instances; GET /api/health is there for external probes
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // The host's storage, with the app's identity.
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        { name: 'AzureWebJobsStorage__blobServiceUri', value: hostStorage.properties.primaryEndpoints.blob }
        { name: 'AzureWebJobsStorage__queueServiceUri', value: hostStorage.properties.primaryEndpoints.queue }
        { name: 'AzureWebJobsStorage__tableServiceUri', value: hostStorage.properties.primaryEndpoints.table }
        // The blob trigger's connection (a trigger needs the queue URI too); the
        // app's own clients read DATASET_STORAGE__blobServiceUri.
        { name: 'DATASET_STORAGE__credential', value: 'managedidentity' }
        { name: 'DATASET_STORAGE__clientId', value: identity.properties.clientId }
        { name: 'DATASET_STORAGE__blobServiceUri', value: datasetStorage.properties.primaryEndpoints.blob }
        { name: 'DATASET_STORAGE__queueServiceUri', value: datasetStorage.properties.primaryEndpoints.queue }
        // DefaultAzureCredential in the app's code: the user-assigned identity.
        { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
        // Telemetry with Entra authentication (the resource has local auth off).
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
        // Flex Consumption supports only the Event Grid source for blob triggers.
        { name: 'DATASET_TRIGGER_SOURCE', value: 'EventGrid' }
        { name: 'AZURE_SUBSCRIPTION_ID', value: subscriptionId }
        { name: 'AZURE_RESOURCE_GROUP', value: workspaceResourceGroup }
        { name: 'AZUREML_WORKSPACE', value: workspaceName }
        { name: 'FINETUNE_BASE_MODEL', value: finetuneBaseModel }
        { name: 'FINETUNE_TASK', value: finetuneTask }
        { name: 'FINETUNE_INSTANCE_TYPES', value: finetuneInstanceTypes }
        { name: 'FINETUNE_COMPUTE', value: finetuneCompute }
        { name: 'FINETUNE_EXPERIMENT', value: finetuneExperiment }
        { name: 'DATASET_CONTAINER', value: datasetContainerName }
        { name: 'WORK_CONTAINER', value: workContainerName }
        { name: 'RUN_TABLE', value: runTableName }
        { name: 'ENDPOINT_NAME', value: endpointName }
        { name: 'DEPLOYMENT_INSTANCE_TYPE', value: deploymentInstanceType }
        { name: 'DEPLOYMENT_INSTANCE_COUNT', value: string(deploymentInstanceCount) }
        // Lifecycle events, sent with the app's identity (no EVENTS_TOPIC_KEY).
        { name: 'EVENTS_TOPIC_ENDPOINT', value: eventsTopicEndpoint }
        { name: 'EVENTS_SOURCE', value: eventsSource }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
