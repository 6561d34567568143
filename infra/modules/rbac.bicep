// Role assignments for the app's managed identity and for the operator (azd's principalId: the
// person or pipeline that runs azd and the parallelrun CLI):
//   app       Storage Blob Data Owner        storage account   host storage, deployment package,
//                                                               data, user delegation key (read_sas)
//   app       Storage Queue Data Contributor storage account   plan / batch / finalize / poison queues
//   app       Storage Table Data Contributor storage account   ledger, job index, model registry
//   app       Monitoring Metrics Publisher   App Insights      Entra-authenticated telemetry
//   operator  Storage Blob/Queue/Table Data Contributor (account): uploads, submit, status, results
// What each is for, in full: infra/README.md ("Roles"); tests/unit/infra_checks.py checks this file
// against that list and each id against the built-in role of its name.

@description('Name of the storage account (in this resource group).')
param storageAccountName string

@description('Name of the Application Insights component (in this resource group).')
param applicationInsightsName string

@description('Principal (object) id of the app\'s user-assigned managed identity.')
param appPrincipalId string

@description('Optional: object id of a user, group or service principal that uploads inputs, registers models and reads outputs (e.g. the `parallelrun` CLI run against this account). Empty = none.')
param operatorPrincipalId string = ''

@description('Kind of principal operatorPrincipalId is.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var appStorageRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

// No operator given: no assignments.
var operatorStorageRoles = empty(operatorPrincipalId) ? [] : [
  roles.storageBlobDataContributor
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource appStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in appStorageRoles: {
  name: guid(storage.id, appPrincipalId, roleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

resource appMetrics 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource operatorStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in operatorStorageRoles: {
  name: guid(storage.id, operatorPrincipalId, roleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}]
