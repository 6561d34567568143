// ParallelRun Functions on Azure, provisioned by `azd up` (or `az deployment sub create`): one
// resource group holding
//   identity        user-assigned managed identity the app runs as
//   monitoring      Log Analytics workspace + Application Insights
//   storage         storage account: host storage, deployment package, ParallelRun's
//                   containers, queues (+ poison queues) and tables
//   rbac            data-plane roles for the identity and for the operator (principalId)
//   functionapp     Flex Consumption plan + Linux Python Function App, identity-based settings
//   eventgrid       system topic on the storage account (blob events)
// The Event Grid subscription requests container -> submit_from_blob
// (modules/eventgrid-subscription.bicep) needs the app's code deployed first: azd's postdeploy
// hook (infra/hooks/postdeploy.py) deploys it. See infra/README.md.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment: names the resource group and seeds the unique names of the resources.')
param environmentName string

@minLength(1)
@description('Azure region of every resource; must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the operator (the person or pipeline that runs azd and the parallelrun CLI): gets Blob/Queue/Table Data Contributor on the storage account. azd sets it to the signed-in principal. Empty = none.')
param principalId string = ''

@description('Kind of principal principalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Resource group name. Default: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Short lowercase prefix for resource names.')
@minLength(2)
@maxLength(12)
param baseName string = 'parallelrun'

@description('Function App name (globally unique). Default: derived from baseName and a hash of subscription, environment and region.')
param functionAppName string = ''

@description('Storage account name (globally unique, 3-24 lowercase letters and digits). Default: derived.')
param storageAccountName string = ''

@description('Upper bound on Function App instances (Flex Consumption scale-out limit).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of each Function App instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Python version of the Function App.')
@allowed([
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Allow shared-key access to the storage account (off: Entra ID only).')
param allowSharedKeyAccess bool = false

@description('Tags for the resource group and every resource (azd-env-name is added).')
param tags object = {
  application: 'parallelrun-functions'
}

var token = toLower(uniqueString(subscription().id, environmentName, location))
var prefix = toLower(baseName)
var appName = empty(functionAppName) ? 'func-${prefix}-${token}' : functionAppName
var accountName = empty(storageAccountName) ? 'st${take(replace(prefix, '-', ''), 9)}${token}' : storageAccountName
var deploymentContainerName = 'app-package-${take(toLower(appName), 32)}-${take(token, 7)}'
var allTags = union(tags, {
  'azd-env-name': environmentName
})

// The service of azure.yaml that azd deploys to the Function App: azd finds the app by this tag.
var serviceName = 'api'

// Names the app reads from its PARALLELRUN_* settings (defaults of shared/settings.py).
var resourceNames = {
  planQueue: 'parallelrun-plan'
  batchQueue: 'parallelrun-batches'
  finalizeQueue: 'parallelrun-finalize'
  requestsContainer: 'parallelrun-requests'
  systemContainer: 'parallelrun'
  outputContainer: 'parallelrun-outputs'
  ledgerTable: 'parallelrunledger'
  indexTable: 'parallelrunjobs'
  modelsTable: 'parallelrunmodels'
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    location: location
    name: 'id-${prefix}-${token}'
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    logAnalyticsName: 'log-${prefix}-${token}'
    applicationInsightsName: 'appi-${prefix}-${token}'
    tags: allTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    name: accountName
    allowSharedKeyAccess: allowSharedKeyAccess
    deploymentContainerName: deploymentContainerName
    containerNames: [
      resourceNames.systemContainer
      resourceNames.requestsContainer
      resourceNames.outputContainer
    ]
    queueNames: [
      resourceNames.planQueue
      resourceNames.batchQueue
      resourceNames.finalizeQueue
    ]
    tableNames: [
      resourceNames.ledgerTable
      resourceNames.indexTable
      resourceNames.modelsTable
    ]
    tags: allTags
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    location: location
    name: appName
    planName: 'plan-${prefix}-${token}'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    resourceNames: resourceNames
    tags: union(allTags, {
      'azd-service-name': serviceName
    })
  }
  // The app reaches storage only through its identity: grant the roles before it starts.
  dependsOn: [
    rbac
  ]
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    location: location
    name: 'evgt-${prefix}-${token}'
    storageAccountId: storage.outputs.id
    tags: allTags
  }
}

// azd keeps these in .azure/<environment>/.env: its deploy step and the postdeploy hook read them,
// and `azd env get-values` shows them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output EVENT_GRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.name
output PARALLELRUN_REQUESTS_CONTAINER string = resourceNames.requestsContainer
