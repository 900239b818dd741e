// finetune-autopilot on Azure, for `azd up`: a resource group with the Function
// App (Flex Consumption, Python 3.11), its identity, storage, monitoring and
// Event Grid topics, and an Azure ML workspace (new, or an existing one by
// name). The Event Grid subscriptions that point at the deployed functions are
// created afterwards by scripts/postdeploy.sh (the azd postdeploy hook).
// Checked offline by `make check-infra` (pycep, checkov, tests/infra).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment: names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region of every new resource. It must offer Flex Consumption (FC1) and, for training and serving, GPU quota for the instance types below.')
param location string

@description('Object id of the deploying user, given data roles on the storage account for local development. Empty: none.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('What principalId is: a user, or the service principal of an automated deployment.')
param principalType string = 'User'

@description('Name of an existing Azure ML workspace. Empty: create one in the new resource group.')
param azureMlWorkspaceName string = ''

@description('Resource group of the existing workspace. Empty: the new resource group.')
param azureMlWorkspaceResourceGroup string = ''

@description('Region of the existing workspace, where its Event Grid system topic must live. Empty: location.')
param azureMlWorkspaceLocation string = ''

@description('An Event Grid system topic that already exists on the existing workspace (Azure allows one per source). Empty: create one.')
param azureMlSystemTopicName string = ''

@description('DATASET_CONTAINER: the blob container datasets are dropped into.')
param datasetContainerName string = 'datasets'

@description('WORK_CONTAINER: the blob container of the app\'s own outputs (reports, training/validation parts), kept out of the watched one.')
param workContainerName string = 'autopilot-work'

@description('RUN_TABLE: the Azure Table of the run ledger.')
param runTableName string = 'finetuneruns'

@description('FINETUNE_BASE_MODEL: full registry id of the model to fine-tune.')
param finetuneBaseModel string = 'azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19'

@allowed([
  'auto'
  'text'
  'chat'
])
@description('FINETUNE_TASK.')
param finetuneTask string = 'auto'

@description('FINETUNE_INSTANCE_TYPES: serverless GPU instance types of the fine-tuning job, comma-separated.')
param finetuneInstanceTypes string = 'Standard_NC24ads_A100_v4'

@description('FINETUNE_COMPUTE: a compute cluster of the workspace to train on instead of serverless. Its identity then needs Storage Blob Data Reader on the storage account.')
param finetuneCompute string = ''

@description('FINETUNE_EXPERIMENT: experiment name of the fine-tuning jobs.')
param finetuneExperiment string = 'finetune-autopilot'

@maxLength(32)
@description('ENDPOINT_NAME: the managed online endpoint. Names are unique per region across all of Azure. Empty: ft-<resource token>.')
param endpointName string = ''

@description('DEPLOYMENT_INSTANCE_TYPE: GPU VM size of each online deployment (billed while it exists).')
param deploymentInstanceType string = 'Standard_NC24ads_A100_v4'

@minValue(1)
@description('DEPLOYMENT_INSTANCE_COUNT.')
param deploymentInstanceCount int = 1

@description('EVENTS_SOURCE: CloudEvents source of the lifecycle events.')
param eventsSource string = '/finetune-autopilot'

@description('Flex Consumption: most instances the app scales out to.')
param maximumInstanceCount int = 40

@allowed([
  2048
  4096
])
@description('Flex Consumption: memory of each instance, in MB.')
param instanceMemoryMB int = 2048

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var createWorkspace = empty(azureMlWorkspaceName)
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var effectiveEndpointName = empty(endpointName) ? take('${abbrs.onlineEndpoints}${resourceToken}', 32) : endpointName
var workspaceResourceGroupName = (createWorkspace || empty(azureMlWorkspaceResourceGroup)) ? rg.name : azureMlWorkspaceResourceGroup
var workspaceLocation = empty(azureMlWorkspaceLocation) ? location : azureMlWorkspaceLocation
var workspaceName = createWorkspace ? ml.outputs.name : azureMlWorkspaceName

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    appInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${resourceToken}'
    datasetContainerName: datasetContainerName
    workContainerName: workContainerName
    runTableName: runTableName
  }
}

module ml 'app/ml-workspace.bicep' = if (createWorkspace) {
  name: 'ml-workspace'
  scope: rg
  params: {
    workspaceName: '${abbrs.machineLearningServicesWorkspaces}${resourceToken}'
    storageAccountName: '${abbrs.storageStorageAccounts}ml${resourceToken}'
    keyVaultName: '${abbrs.keyVaultVaults}${resourceToken}'
    appInsightsName: '${abbrs.insightsComponents}ml-${resourceToken}'
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    location: location
    tags: tags
  }
}

module workspaceAccess 'app/workspace-access.bicep' = {
  name: 'workspace-access-${resourceToken}'
  scope: resourceGroup(workspaceResourceGroupName)
  params: {
    workspaceName: workspaceName
    appPrincipalId: identity.outputs.principalId
    systemTopicName: '${abbrs.eventGridSystemTopics}mlw-${resourceToken}'
    existingSystemTopicName: azureMlSystemTopicName
    location: workspaceLocation
    tags: tags
  }
}

module events 'app/events.bicep' = {
  name: 'events'
  scope: rg
  params: {
    topicName: '${abbrs.eventGridTopics}${resourceToken}'
    storageSystemTopicName: '${abbrs.eventGridSystemTopics}st-${resourceToken}'
    storageAccountName: storage.outputs.name
    location: location
    tags: tags
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityName: identity.outputs.name
    hostStorageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    datasetStorageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    subscriptionId: subscription().subscriptionId
    workspaceResourceGroup: workspaceResourceGroupName
    workspaceName: workspaceName
    finetuneBaseModel: finetuneBaseModel
    finetuneTask: finetuneTask
    finetuneInstanceTypes: finetuneInstanceTypes
    finetuneCompute: finetuneCompute
    finetuneExperiment: finetuneExperiment
    datasetContainerName: storage.outputs.datasetContainerName
    workContainerName: storage.outputs.workContainerName
    runTableName: storage.outputs.runTableName
    endpointName: effectiveEndpointName
    deploymentInstanceType: deploymentInstanceType
    deploymentInstanceCount: deploymentInstanceCount
    eventsTopicEndpoint: events.outputs.topicEndpoint
    eventsSource: eventsSource
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: identity.outputs.principalId
    hostStorageAccountName: storage.outputs.name
    datasetStorageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    eventsTopicName: events.outputs.topicName
    workspacePrincipalId: workspaceAccess.outputs.workspacePrincipalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

// azd stores these in the environment (.azure/<env>/.env); the postdeploy hook
// and `make test-azure` read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_FUNCTION_APP_ID string = api.outputs.id
output AZURE_FUNCTION_APP_URL string = 'https://${api.outputs.defaultHostName}'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output DATASET_CONTAINER string = storage.outputs.datasetContainerName
output WORK_CONTAINER string = storage.outputs.workContainerName
output STORAGE_SYSTEM_TOPIC_NAME string = events.outputs.storageSystemTopicName
// Not named like the AZUREML_WORKSPACE_* inputs of main.parameters.json: an
// output fed back as an input would make the next `azd up` treat the workspace
// it created as an existing one.
output AZUREML_WORKSPACE string = workspaceName
output AZUREML_RESOURCE_GROUP string = workspaceResourceGroupName
output AZUREML_EVENTS_SYSTEM_TOPIC string = workspaceAccess.outputs.systemTopicName
output AZUREML_EVENTS_SYSTEM_TOPIC_RESOURCE_GROUP string = workspaceAccess.outputs.resourceGroupName
output EVENTS_TOPIC_ENDPOINT string = events.outputs.topicEndpoint
output ENDPOINT_NAME string = effectiveEndpointName
