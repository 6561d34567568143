// ParallelRun Functions on Azure: one resource group holding
//   identity        user-assigned managed identity the app runs as
//   monitoring      Log Analytics workspace + Application Insights
//   storage         storage account: host storage, deployment package, ParallelRun's
//                   containers, queues (+ poison queues) and tables
//   rbac            data-plane roles for the identity (and optionally an operator)
//   functionapp     Flex Consumption plan + Linux Python Function App, identity-based settings
//   eventgrid       system topic on the storage account (blob events)
//   eventgrid-subscription  requests container -> submit_from_blob (second pass, after publish)
//
// Deploy:   az deployment group create -g <rg> -f infra/main.bicep -p infra/main.parameters.json
// Publish the app, then run the same command with -p deployBlobEventSubscription=true.
// See infra/README.md.

targetScope = 'resourceGroup'

@description('Azure region for every resource; must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
param location string = resourceGroup().location

@description('Short lowercase prefix for resource names.')
@minLength(2)
@maxLength(12)
param baseName string = 'parallelrun'

@description('Function App name (globally unique). Default: derived from baseName and the resource group.')
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

@description('Create the Event Grid subscription requests container -> submit_from_blob. Needs the app\'s code published first (its blobs_extension key exists only then).')
param deployBlobEventSubscription bool = false

@description('Name of the Event Grid blob-triggered function that submits uploaded job requests.')
param blobTriggerFunctionName string = 'submit_from_blob'

@description('Optional object id of a user/group/service principal that submits jobs, uploads inputs and reads outputs from outside the app (gets Blob/Queue/Table Data Contributor). Empty = none.')
param operatorPrincipalId string = ''

@description('Kind of principal operatorPrincipalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

@description('Tags for every resource.')
param tags object = {
  application: 'parallelrun-functions'
}

var token = toLower(uniqueString(subscription().id, resourceGroup().id, location))
var prefix = toLower(baseName)
var appName = empty(functionAppName) ? 'func-${prefix}-${token}' : functionAppName
var accountName = empty(storageAccountName) ? 'st${take(replace(prefix, '-', ''), 9)}${token}' : storageAccountName
var deploymentContainerName = 'app-package-${take(toLower(appName), 32)}-${take(token, 7)}'

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

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    location: location
    name: 'id-${prefix}-${token}'
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    logAnalyticsName: 'log-${prefix}-${token}'
    applicationInsightsName: 'appi-${prefix}-${token}'
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
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
    tags: tags
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
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
    tags: tags
  }
  // The app reaches storage only through its identity: grant the roles before it starts.
  dependsOn: [
    rbac
  ]
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  params: {
    location: location
    name: 'evgt-${prefix}-${token}'
    storageAccountId: storage.outputs.id
    tags: tags
  }
}

module eventGridSubscription 'modules/eventgrid-subscription.bicep' = if (deployBlobEventSubscription) {
  name: 'eventgrid-subscription'
  params: {
    systemTopicName: eventGrid.outputs.name
    functionAppName: functionApp.outputs.name
    functionName: blobTriggerFunctionName
    requestsContainerName: resourceNames.requestsContainer
  }
}

output functionAppName string = functionApp.outputs.name
output functionAppHostName string = functionApp.outputs.defaultHostName
output storageAccountName string = storage.outputs.name
output blobEndpoint string = storage.outputs.blobEndpoint
output queueEndpoint string = storage.outputs.queueEndpoint
output tableEndpoint string = storage.outputs.tableEndpoint
output deploymentContainerName string = storage.outputs.deploymentContainerName
output managedIdentityClientId string = identity.outputs.clientId
output applicationInsightsName string = monitoring.outputs.applicationInsightsName
output eventGridSystemTopicName string = eventGrid.outputs.name
output blobEventSubscriptionDeployed bool = deployBlobEventSubscription
