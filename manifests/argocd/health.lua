-- Argo CD health check for rackmesh.io/DeploymentRequest.
--
-- The status follows kstatus conventions (metadata.generation, status.observedGeneration and the
-- Ready / Reconciling / Stalled conditions); see docs/argocd.md. Rules, first match wins:
--   1. no status, no status.observedGeneration, or observedGeneration < metadata.generation
--      -> Progressing "Waiting for the operator to observe generation N"
--   2. status.phase == "Failed"
--      -> Degraded "<reason>: <message>" of Stalled=True, else of the Ready condition, else "Failed"
--   3. Stalled=True (InsufficientCapacity, InsufficientImageReplicas, UnknownInstancetype, ...)
--      -> Degraded "<reason>: <message>"
--   4. Ready=True -> Healthy with the Ready condition's message ("50/50 VMs ready")
--   5. otherwise -> Progressing with the Reconciling=True condition's message, else the Ready
--      condition's message, else "R/N VMs ready" from the counts, else a generic message.
-- A condition whose own observedGeneration is older than metadata.generation is ignored: it
-- describes an earlier spec (a Ready=True from before a scale-up must not read as Healthy).
--
-- Argo CD runs argocd-cm scripts without the Lua standard libraries (no string, no math) unless
-- useOpenLibs is set, so this uses only base functions. Any field may be missing or of a wrong
-- type; the script never indexes a non-table or concatenates a non-string.

local function field(t, key)
  if type(t) == "table" then
    return t[key]
  end
  return nil
end

local function text(v)
  if type(v) == "string" then
    return v
  end
  if type(v) == "number" then
    return tostring(v)
  end
  return nil
end

-- Argo CD passes integers as numbers; a json.Number would arrive as a string.
local function number(v)
  if type(v) == "number" then
    return v
  end
  if type(v) == "string" then
    return tonumber(v)
  end
  return nil
end

local hs = {}
local status = field(obj, "status")
local generation = number(field(field(obj, "metadata"), "generation"))
local observed = number(field(status, "observedGeneration"))

local function waiting()
  if generation ~= nil then
    return "Waiting for the operator to observe generation " .. tostring(generation)
  end
  return "Waiting for the operator to observe the request"
end

if type(status) ~= "table" or observed == nil or (generation ~= nil and observed < generation) then
  hs.status = "Progressing"
  hs.message = waiting()
  return hs
end

-- The first condition of that type, unless it describes an older generation.
local function condition(kind)
  local conditions = field(status, "conditions")
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == kind then
      local cgen = number(c.observedGeneration)
      if cgen ~= nil and generation ~= nil and cgen < generation then
        return nil
      end
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function nonEmpty(v)
  local s = text(v)
  if s ~= nil and s ~= "" then
    return s
  end
  return nil
end

-- "<reason>: <message>", or whichever of the two is there, or the fallback.
local function explain(c, fallback)
  local reason = nonEmpty(field(c, "reason"))
  local message = nonEmpty(field(c, "message"))
  if reason ~= nil and message ~= nil then
    return reason .. ": " .. message
  end
  return reason or message or fallback
end

local stalled = condition("Stalled")
local ready = condition("Ready")
local reconciling = condition("Reconciling")

if field(status, "phase") == "Failed" then
  hs.status = "Degraded"
  if isTrue(stalled) or ready == nil then
    hs.message = explain(stalled, "Failed")
  else
    hs.message = explain(ready, "Failed")
  end
  return hs
end

if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = explain(stalled, "Stalled")
  return hs
end

local readyReplicas = number(field(status, "readyReplicas"))
local replicas = number(field(field(obj, "spec"), "replicas"))
local counts = nil
if readyReplicas ~= nil and replicas ~= nil then
  counts = tostring(readyReplicas) .. "/" .. tostring(replicas) .. " VMs ready"
end

if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = nonEmpty(field(ready, "message")) or counts or "Ready"
  return hs
end

hs.status = "Progressing"
if isTrue(reconciling) then
  hs.message = nonEmpty(reconciling.message) or nonEmpty(reconciling.reason)
end
hs.message = hs.message or nonEmpty(field(ready, "message")) or counts or "Waiting for the VMs to be ready"
return hs
