-- gateway.openapi: the Admin API's OpenAPI 3.0 description, derived from the entity
-- definitions (gateway.entities, the plugins' schemas) and the routes made from them
-- (gateway.endpoints), so that a new entity, field or plugin is described with no
-- change here. Served at GET /openapi.json; docs/admin-openapi.json is a copy
-- (`make admin-openapi` writes it, t/lua/openapi_spec.lua fails when it is stale).
-- Pure: no nginx.
--
--   openapi.document() -> the description, as a Lua table
--   openapi.json()     -> it as JSON text: keys sorted, two-space indents, so that the
--                         copy in the repository diffs line by line
--
-- What the schemas cannot say (the store's checks: unique names, references to
-- entities that exist, entity_checks, custom checks such as host names) is left to
-- descriptions; those inputs get the documented 400/409.

local core = require "ngx_prometheus"
local entities = require "gateway.entities"
local endpoints = require "gateway.endpoints"
local crud = require "gateway.db.crud"

local null, array_mt = core.null, core.array_mt
local ipairs, pairs, next, type, tostring, error, unpack = ipairs, pairs, next, type, tostring, error, unpack
local getmetatable, setmetatable, floor = debug.getmetatable, setmetatable, math.floor
local fmt, concat, sort, byte = string.format, table.concat, table.sort, string.byte

local defs = entities.defs

local _M = {}

-- A JSON array: a copy of `t` (which may be a schema's own, already marked, table).
local function array(t)
    local copy = {}
    for i, v in ipairs(t) do copy[i] = v end
    return setmetatable(copy, array_mt)
end

--------------------------------------------------------------------------------
-- Lua patterns (the schemas' `match`) as the regular expressions of JSON Schema.

local CLASSES = { w = "A-Za-z0-9", d = "0-9", u = "A-Z", l = "a-z", a = "A-Za-z", x = "0-9A-Fa-f" }
local SPECIAL_OUT, SPECIAL_IN = "[%.%^%$|%?%*%+%(%)%[%]{}\\/]", "[%]%[%^\\%-]"

local function regex(pattern)
    local out, i, n, in_set = {}, 1, #pattern, false
    while i <= n do
        local c = pattern:sub(i, i)
        if c == "%" then
            i = i + 1
            local e = pattern:sub(i, i)
            if CLASSES[e] then
                out[#out + 1] = in_set and CLASSES[e] or "[" .. CLASSES[e] .. "]"
            elseif e:find("^%p$") then
                out[#out + 1] = e:find(in_set and SPECIAL_IN or SPECIAL_OUT) and "\\" .. e or e
            else
                error(fmt("gateway.openapi: Lua pattern %q: %%%s has no regular expression here", pattern, e), 0)
            end
        elseif in_set then
            if c == "]" then in_set = false end
            out[#out + 1] = c
        elseif c == "[" then
            in_set = true
            out[#out + 1] = c
            if pattern:sub(i + 1, i + 1) == "^" then
                out[#out + 1] = "^"
                i = i + 1
            end
        elseif c == "-" then
            error(fmt("gateway.openapi: Lua pattern %q: the lazy '-' has no regular expression here", pattern), 0)
        elseif c == "^" and i == 1 or c == "$" and i == n or c:find("[%.%*%+%?]") then
            out[#out + 1] = c
        else
            out[#out + 1] = c:find(SPECIAL_OUT) and "\\" .. c or c
        end
        i = i + 1
    end
    return concat(out)
end
_M.regex = regex

--------------------------------------------------------------------------------
-- Field definitions as JSON Schemas. `mode` is "response" (what the Admin API shows)
-- or "request" (what a POST, PUT or PATCH body may hold).

local UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

local field_schema, record_schema

-- A value may be null in a request unless the field is required without a default
-- (null means "unset": the default applies); an answer shows null for a field that
-- is unset, which a default or `required` rules out.
local function nullable(def, mode)
    if mode == "request" then return not (def.required and def.default == nil) end
    return not (def.required or def.default ~= nil or def.type == "record")
end

local function default_value(def)
    local d = def.default
    if d == nil or type(d) == "function" then return nil end
    if type(d) == "table" then
        local copy = {}
        for i, v in ipairs(d) do copy[i] = v end
        return array(copy)
    end
    return d
end

-- `element`: a list's element, never null (refused in a request).
function field_schema(def, mode, element)
    local t, s = def.type, nil
    if t == "string" then
        s = { type = "string", minLength = def.len_min, maxLength = def.len_max }
        if def.uuid then
            s.format, s.pattern = "uuid", UUID_PATTERN
        elseif def.match then
            s.pattern = regex(def.match)
        end
    elseif t == "integer" or t == "number" then
        s = { type = t }
        if def.between then s.minimum, s.maximum = def.between[1], def.between[2] end
    elseif t == "boolean" then
        s = { type = "boolean" }
    elseif t == "array" or t == "set" then
        local items = def.elements and field_schema(def.elements, mode, true) or {}
        s = { type = "array", minItems = def.len_min, maxItems = def.len_max, items = items }
        -- A set is stored without duplicates; a request's duplicates are dropped.
        if t == "set" and mode == "response" then s.uniqueItems = true end
        if mode == "request" then
            -- As the schema coerces input (forms cannot say otherwise): one element is
            -- a list of one, and an empty object an empty list.
            local any = { s, items }
            if (def.len_min or 0) == 0 then any[3] = { type = "object", maxProperties = 0 } end
            s = { anyOf = array(any) }
        end
    elseif t == "map" then
        s = { type = "object", additionalProperties = def.values and field_schema(def.values, mode, true) or {} }
    elseif t == "record" then
        if def.fields then
            s = record_schema(def, mode)
        else
            -- Its fields depend on the entity (a plugin's config): see plugin_variants.
            s = { type = "object" }
        end
    elseif t == "foreign" then
        local ref = defs[def.reference]
        if mode == "response" then
            s = { type = "object", required = array({ "id" }), additionalProperties = false,
                  properties = { id = { type = "string", format = "uuid", pattern = UUID_PATTERN } } }
        else
            local key = ref.endpoint_key and ref.fields[ref.endpoint_key]
            s = { description = fmt("A %s: { \"id\": ... }%s, or its id%s as a string.", def.reference,
                    key and fmt(" or { \"name\": <its %s> }", ref.endpoint_key) or "",
                    key and " or " .. ref.endpoint_key or ""),
                  anyOf = array({
                      { type = "object", additionalProperties = false, required = array({ "id" }),
                        properties = { id = { type = "string", format = "uuid", pattern = UUID_PATTERN } } },
                      { type = "object", additionalProperties = false, required = array({ "name" }),
                        properties = { name = { type = "string", minLength = 1, maxLength = 256 } } },
                      { type = "string", minLength = 1, maxLength = 256 },
                  }) }
        end
    else
        error("gateway.openapi: no JSON Schema for field type " .. tostring(t), 0)
    end
    if def.one_of then s.enum = array(def.one_of) end
    if def.description then s.description = def.description end
    if mode == "request" then s.default = default_value(def) end
    if nullable(def, mode) and not element then
        s.nullable = true
        -- OpenAPI 3.0.3: an enum lists null too when null is valid.
        if s.enum then
            local values = { unpack(s.enum) }
            values[#values + 1] = null
            s.enum = array(values)
        end
    end
    return s
end

-- `skip`: a field the URL gives (a nested collection's reference to its parent; on
-- PUT, the entity's endpoint key when the URL names it by that); `optional`: nothing
-- required (PATCH, PUT). An entity's answer (`entity`) shows every field, null when
-- unset; a record's, those with a value.
function record_schema(sch, mode, skip, optional, entity)
    local props, required = {}, {}
    for _, f in ipairs(sch.fields) do
        local name, def = next(f)
        if skip and skip[name] then
            props[name] = { description = skip[name] }
        else
            props[name] = field_schema(def, mode)
            local needed
            if mode == "response" then
                needed = entity or not nullable(def, mode)
            else
                needed = def.required and def.default == nil and not optional
            end
            if needed then required[#required + 1] = name end
        end
    end
    local s = { type = "object", properties = props, additionalProperties = false }
    if sch.shorthands and mode == "request" then
        local names = {}
        for name in pairs(sch.shorthands) do names[#names + 1] = name end
        sort(names)
        for _, name in ipairs(names) do
            local sh = sch.shorthands[name]
            props[name] = { type = sh.type, description = sh.description }
        end
        -- A shorthand may give the required fields: either is enough.
        if #required > 0 then
            local any = { { required = array(required) } }
            for _, name in ipairs(names) do any[#any + 1] = { required = array({ name }) } end
            s.anyOf = array(any)
            required = {}
        end
    end
    if #required > 0 then s.required = array(required) end
    return s
end

-- A record field with `variants` (a plugin's config): one schema per value of the
-- variant field (the plugin's name), as oneOf branches of the entity.
local function schema_name(kind, suffix)
    local name = kind:gsub("^%l", string.upper):gsub("[_%-](%l)", string.upper)
    return name .. (suffix or "")
end

-- A record field with `variants` (a plugin's config): one schema per value of the
-- variant field (the plugin's name), kept in `out` as <Value><Field>[Input], and the
-- oneOf branches of the entity that pair each value with its schema.
local function plugin_variants(sch, mode, out)
    for _, f in ipairs(sch.fields) do
        local name, def = next(f)
        if def.variants then
            local schemas, values = def.variants.schemas(), {}
            for v in pairs(schemas) do values[#values + 1] = v end
            sort(values)
            local branches = {}
            for _, v in ipairs(values) do
                local config = record_schema(schemas[v], mode)
                local cname = schema_name(v, schema_name(name, mode == "request" and "Input" or nil))
                -- A request may leave it out or send null: the defaults apply.
                if mode == "request" then config.nullable = true end
                out[cname] = config
                branches[#branches + 1] = { properties = {
                    [def.variants.field] = { type = "string", enum = array({ v }) },
                    [name] = { ["$ref"] = "#/components/schemas/" .. cname },
                } }
            end
            return array(branches), def.variants.field, values
        end
    end
end

--------------------------------------------------------------------------------
-- Components.

local ERROR = {
    type = "object",
    required = array({ "message" }),
    description = "An error. Schema violations (code 2) name each bad field in `fields`, nested like the "
        .. "input (a list's bad elements at their index, `@entity` for the entity as a whole); "
        .. "reference errors (code 4) and unique violations (codes 3, 5) name the field too.",
    properties = {
        message = { type = "string" },
        code = { type = "integer", description = "2 schema violation, 3 primary key violation, "
            .. "4 foreign key violation, 5 unique constraint violation, 7 invalid offset, 8 database error "
            .. "or busy, 9 invalid size, 10 invalid options (`tags`), 12 operation unsupported (DB-less mode), "
            .. "13 configuration too large" },
        name = { type = "string" },
        fields = { type = "object", additionalProperties = true },
    },
}

local STATUS_TEXT = {
    [400] = "Bad input, named in the body: a schema violation, a reference to a missing entity, a "
        .. "malformed body or key, a bad `size`, `offset` or `tags`, the configuration too large, or deleting an "
        .. "entity others reference (a service that routes use, an upstream with targets)",
    [404] = "No such entity (or no such parent, on a nested path)",
    [405] = "Method not allowed here (the `Allow` header lists those that are), or a write in DB-less mode",
    [409] = "A unique field (name, username, key...) or id already taken",
    [413] = "The body is larger than 1 MB",
    [415] = "The body's media type is neither application/json nor application/x-www-form-urlencoded",
    [503] = "The configuration lock stayed busy (a stalled write): nothing changed, try again",
}

local HEADER_DEFS = {
    ["X-Gateway-Worker"] = { description = "The pid of the worker that answered.",
                             schema = { type = "integer" } },
    ["X-Gateway-Config-Version"] = { description = "The configuration version that worker runs.",
                                     schema = { type = "integer" } },
}

local HEADERS = {}
for name in pairs(HEADER_DEFS) do HEADERS[name] = { ["$ref"] = "#/components/headers/" .. name } end

local function json_content(schema)
    return { ["application/json"] = { schema = schema } }
end

local function ok(description, schema)
    return { description = description, headers = HEADERS, content = schema and json_content(schema) }
end

local function error_responses()
    local out = {}
    for status, text in pairs(STATUS_TEXT) do
        out[tostring(status)] = {
            description = text,
            -- 413 is nginx's (client_max_body_size), before the Admin API sees the request.
            headers = status ~= 413 and HEADERS or nil,
            content = json_content({ ["$ref"] = "#/components/schemas/Error" }),
        }
    end
    return out
end

local function errors(statuses, out)
    for _, status in ipairs(statuses) do
        out[tostring(status)] = { ["$ref"] = "#/components/responses/" .. status }
    end
    return out
end

local function ref(name)
    return { ["$ref"] = "#/components/schemas/" .. name }
end

-- Entity schemas by kind: <Kind> (an answer), <Kind>Create (POST), <Kind>Update
-- (PATCH, PUT), and both without the parent's field for nested paths
-- (<Kind>CreateIn<Parent>).
local function entity_schemas(kind, out)
    local def = defs[kind]
    local resp = record_schema(def.schema, "response", nil, nil, true)
    local variants, vfield, values = plugin_variants(def.schema, "response", out)
    if variants then
        resp.properties[vfield].enum = array(values)
        resp.oneOf = variants
    end
    out[schema_name(kind)] = resp
    local function request(suffix, skip, optional)
        local s = record_schema(def.schema, "request", skip, optional)
        -- A change may leave the name out (the stored one applies): any branch may match.
        if optional then
            s.anyOf = plugin_variants(def.schema, "request", out)
        else
            s.oneOf = plugin_variants(def.schema, "request", out)
        end
        out[schema_name(kind, suffix)] = s
    end
    -- PUT /<path>/{key}: the URL's key is the entity's endpoint key unless it is an id.
    local key = def.endpoint_key
    local put_skip = key and { [key] = fmt("Ignored when the URL names the %s by %s (the URL's "
        .. "wins); else as in POST.", kind, key) }
    -- A change keeps the entity's id and creation time (gateway.db.crud).
    local kept = {}
    for _, f in ipairs(crud.KEPT) do
        kept[f] = fmt("Ignored when the %s exists: it keeps its %s.", kind, f)
    end
    local function with(base, extra)
        local merged = {}
        for k, v in pairs(base or {}) do merged[k] = v end
        for k, v in pairs(extra or {}) do merged[k] = v end
        return merged
    end
    request("Create")
    request("Update", kept, true)
    request("Replace", with(kept, put_skip), true)
    for _, fk in ipairs(def.foreign) do
        local parent = { [fk.field] = fmt("Ignored: the %s is the URL's.", fk.reference) }
        local suffix = "In" .. schema_name(fk.reference)
        request("Create" .. suffix, parent)
        request("Update" .. suffix, with(kept, parent), true)
        request("Replace" .. suffix, with(with(kept, put_skip), parent), true)
    end
    out[schema_name(kind, "Page")] = {
        type = "object",
        required = array({ "data", "next" }),
        additionalProperties = false,
        properties = {
            data = { type = "array", items = ref(schema_name(kind)) },
            offset = { type = "string", description = "Pass as `offset` for the next page; absent on the last." },
            next = { type = "string", nullable = true,
                     description = "The next page's path and query; null on the last page." },
        },
    }
end

--------------------------------------------------------------------------------
-- Paths.

local BODY_TEXT = "JSON, or a form with dotted or bracketed keys (`config.per_consumer=true`, "
    .. "`paths[]=/x`, `paths[1]=/x`, `tags=a&tags=b`); form values are strings, coerced by the schema "
    .. "(`true`/`false`, decimal numbers). A field may be given one way only; every form pair "
    .. "needs a name. A blank body (whitespace only, whatever its type) is no body: {}. At most 1 MB."

local function request_body(schema_ref, required)
    return {
        required = required,
        description = BODY_TEXT,
        content = {
            ["application/json"] = { schema = schema_ref },
            ["application/x-www-form-urlencoded"] = { schema = schema_ref },
        },
    }
end

-- A path segment as nginx leaves it for the Admin API (it decodes and normalizes the
-- URL first): no `/`, not `.` or `..`, no NUL (nginx refuses it: 400).
local KEY_PATTERN = "^([^/.\\x00][^/\\x00]*|\\.[^/.\\x00][^/\\x00]*|\\.\\.[^/\\x00]+)$"

local function key_param(kind)
    local def = defs[kind]
    local key = def.endpoint_key
    return {
        name = key and "id_or_" .. key or "id",
        ["in"] = "path",
        required = true,
        description = key and fmt("The %s's id, or its %s%s. A key holding `/` (or `.`, `..`) cannot be "
                .. "given in a path: use the id.", kind, key,
                def.endpoint_key_scope and fmt(" (unique within its %s)", def.endpoint_key_scope) or "")
            or "The entity's id (anything else names nothing: 404).",
        schema = { type = "string", pattern = KEY_PATTERN },
    }
end

local function parent_param(kind, field)
    local p = key_param(kind)
    p.name = field
    p.description = fmt("The %s's id or %s.", kind, defs[kind].endpoint_key or "id")
    return p
end

local function page_param_defs()
    return {
        size = { name = "size", ["in"] = "query", required = false,
                 description = fmt("Entities per page (decimal digits), %d by default.", endpoints.PAGE.default),
                 schema = { type = "integer", minimum = 1, maximum = endpoints.PAGE.max } },
        offset = { name = "offset", ["in"] = "query", required = false,
                   description = "Where the page starts: the previous page's `offset` (given once).",
                   schema = { type = "string", minLength = 1 } },
        tags = { name = "tags", ["in"] = "query", required = false,
                 description = fmt("Only entities with these tags (Kong's filter): `a,b` both, `a/b` either; "
                     .. "at most %d tags, each as a tag is stored (1 to 128 bytes, no `,`, `/` or space); "
                     .. "`,` and `/` together are refused (given once). The `next` page keeps the filter.",
                     endpoints.MAX_FILTER_TAGS),
                 -- At most 5 tags of 128 bytes and 4 separators: anything longer is refused.
                 schema = { type = "string", minLength = 1,
                            maxLength = endpoints.MAX_FILTER_TAGS * 129 - 1 } },
    }
end

local function page_params()
    return array({ { ["$ref"] = "#/components/parameters/size" }, { ["$ref"] = "#/components/parameters/offset" },
                   { ["$ref"] = "#/components/parameters/tags" } })
end

local function op_id(...)
    return concat({ ... }, ".")
end

-- `list` sorted, with 404 when on a nested path (no such parent).
local function statuses(list, nested)
    local out = {}
    for i, st in ipairs(list) do out[i] = st end
    if nested and list[1] ~= 404 then
        local has = false
        for _, st in ipairs(list) do has = has or st == 404 end
        if not has then out[#out + 1] = 404 end
    end
    sort(out)
    return out
end

-- The operations on one collection and its entities: `base` is the collection's path,
-- `parent` = { kind, field } on a nested path.
local function add_collection(paths, kind, base, id_base, parent)
    local def = defs[kind]
    local suffix = parent and "In" .. schema_name(parent.kind) or ""
    local key = key_param(kind)
    local item = base .. "/{" .. key.name .. "}"
    local nested = parent ~= nil
    local create_ref = ref(schema_name(kind, "Create" .. suffix))
    local update_ref = ref(schema_name(kind, "Update" .. suffix))
    local entity_ref = ref(schema_name(kind))
    -- What a created entity can be reached by (schemathesis follows these).
    local links = {}
    for _, op in ipairs({ "get", "patch", "put", "delete" }) do
        local params = { [key.name] = "$response.body#/id" }
        if parent then params[parent.field] = "$request.path." .. parent.field end
        links[op] = { operationId = op_id(id_base, op), parameters = params }
    end
    local created = ok("Created.", entity_ref)
    created.links = links
    paths[base] = {
        parameters = parent and array({ parent_param(parent.kind, parent.field) }) or nil,
        get = { operationId = op_id(id_base, "list"), summary = fmt("List %s, in creation order", kind),
                parameters = page_params(),
                responses = errors(statuses({ 400 }, nested),
                                   { ["200"] = ok("A page.", ref(schema_name(kind, "Page"))) }) },
        head = { operationId = op_id(id_base, "list", "head"), parameters = page_params(),
                 responses = errors(statuses({ 400 }, nested), { ["200"] = ok("As GET, without the body.") }) },
        post = {
            operationId = op_id(id_base, "create"),
            summary = fmt("Create a %s", kind),
            requestBody = request_body(create_ref, false),
            responses = errors(statuses({ 400, 405, 409, 413, 415, 503 }, nested), { ["201"] = created }),
        },
    }
    local params = array({ key })
    if parent then params = array({ parent_param(parent.kind, parent.field), key }) end
    paths[item] = {
        parameters = params,
        get = { operationId = op_id(id_base, "get"), summary = fmt("A %s", kind),
                responses = errors({ 404 }, { ["200"] = ok("The entity.", entity_ref) }) },
        head = { operationId = op_id(id_base, "get", "head"),
                 responses = errors({ 404 }, { ["200"] = ok("As GET, without the body.") }) },
        patch = {
            operationId = op_id(id_base, "patch"),
            summary = fmt("Change fields of a %s (records merged field by field, null unsets)", kind),
            requestBody = request_body(update_ref, false),
            responses = errors({ 400, 404, 405, 409, 413, 415, 503 }, { ["200"] = ok("The entity.", entity_ref) }),
        },
        put = {
            operationId = op_id(id_base, "put"),
            summary = fmt("Create or replace a %s by id%s (200 either way)", kind,
                def.endpoint_key and " or " .. def.endpoint_key or ""),
            description = "The body replaces the entity whole; the URL's key wins over the body's.",
            requestBody = request_body(ref(schema_name(kind, "Replace" .. suffix)), false),
            responses = errors({ 400, 404, 405, 409, 413, 415, 503 }, { ["200"] = ok("The entity.", entity_ref) }),
        },
        delete = {
            operationId = op_id(id_base, "delete"),
            summary = fmt("Delete a %s and what goes with it (204 also when there is none)", kind),
            responses = errors(statuses({ 400, 405, 503 }, nested), { ["204"] = ok("Deleted, or there was none.") }),
        },
    }
end

local function add_node_paths(paths)
    local node = {
        type = "object",
        required = array({ "node_id", "version", "hostname", "tagline", "configuration", "plugins" }),
        properties = {
            node_id = { type = "string", format = "uuid" },
            version = { type = "string" },
            hostname = { type = "string" },
            tagline = { type = "string" },
            configuration = { type = "object", required = array({ "database" }),
                properties = { database = { type = "string", enum = array({ "file", "off" }) } } },
            plugins = { type = "object", required = array({ "available_on_server", "enabled_in_cluster" }),
                properties = {
                    available_on_server = { type = "array", items = { type = "string" } },
                    enabled_in_cluster = { type = "array", items = { type = "string" } },
                } },
        },
    }
    local function node_get(id, summary, responses)
        return {
            get = { operationId = id, summary = summary, responses = responses },
            head = { operationId = id .. ".head", responses = { ["200"] = ok("As GET, without the body.") } },
        }
    end
    paths["/"] = node_get("node", "Node id, version, plugins",
        { ["200"] = ok("The node.", node) })
    paths["/status"] = node_get("status", "The metric zone's capacity, usage, series and errors",
        { ["200"] = ok("Status.", { type = "object" }) })
    -- nginx's prometheus_metrics handler (conf/gateway.conf), not this module: the
    -- metrics port's formats, filters and refusals, one-line text errors.
    local text = { type = "string" }
    local function refusal(description)
        return { description = description, content = { ["text/plain"] = { schema = text } } }
    end
    paths["/metrics"] = node_get("metrics", "The exposition the metrics port serves (the same handler)", {
        ["200"] = { description = "Text format 0.0.4, OpenMetrics or JSON (Accept, ?format=), gzip on request; "
                        .. "?format=html: the status page, which polls the JSON.",
                    content = { ["text/plain"] = { schema = text },
                                ["application/openmetrics-text"] = { schema = text },
                                ["application/json"] = { schema = { type = "object" } },
                                ["text/html"] = { schema = text } } },
        ["400"] = refusal("A malformed Accept header or query argument."),
        ["404"] = refusal("An unknown family or group."),
        ["406"] = refusal("No format the client accepts."),
        ["503"] = refusal("Too many scrapes held by this worker; retry after Retry-After."),
    })
    paths["/plugins/enabled"] = node_get("plugins.enabled", "The plugins this node runs (as Kong's)", {
        ["200"] = ok("Their names.", { type = "object", required = array({ "enabled_plugins" }),
            properties = { enabled_plugins = { type = "array", items = { type = "string" } } } }),
    })
    local by_name = node_get("schemas.plugins", "A plugin's schema (as Kong's)", {
        ["200"] = ok("Its fields, the config record among them.", { type = "object", required = array({ "fields" }),
            properties = { fields = { type = "array", items = { type = "object" } } } }),
        ["404"] = { ["$ref"] = "#/components/responses/404" },
    })
    local name = array({ { name = "name", ["in"] = "path", required = true, schema = { type = "string",
        pattern = "^[^/]+$" } } })
    by_name.get.parameters, by_name.head.parameters = name, name
    by_name.head.responses["404"] = { description = "No such plugin." }
    paths["/schemas/plugins/{name}"] = by_name
    paths["/openapi.json"] = node_get("openapi", "This description", {
        ["200"] = ok("The OpenAPI 3.0 document.", { type = "object" }),
    })
end

local document_cache

function _M.document()
    if document_cache then return document_cache end
    local schemas, paths = { Error = ERROR }, {}
    for _, kind in ipairs(entities.kinds) do
        entity_schemas(kind, schemas)
    end
    for path, kind in pairs(endpoints.collections) do
        add_collection(paths, kind, "/" .. path, path)
    end
    for parent, under in pairs(endpoints.nested) do
        local ppath = defs[parent].path
        for npath, child in pairs(under) do
            add_collection(paths, child.kind, fmt("/%s/{%s}/%s", ppath, child.field, npath),
                ppath .. "." .. npath, { kind = parent, field = child.field })
        end
    end
    add_node_paths(paths)
    document_cache = {
        openapi = "3.0.3",
        info = {
            title = "ngx-prometheus gateway Admin API",
            -- The description's own version; GET / tells the build's.
            version = "1",
            description = "Kong's shapes, derived from the entity definitions "
                .. "(lua/gateway/entities.lua). Every response but nginx's 413 and /metrics (the metrics "
                .. "port's handler: X-Gateway-Worker only) carries X-Gateway-Worker and "
                .. "X-Gateway-Config-Version. Any other method on a path is 405 with an Allow header "
                .. "(after a 404 when a nested path's parent does not exist). A request nginx refuses "
                .. "before the Admin API sees it (malformed, a URI or header too long) gets the Error "
                .. "body too, without those headers.",
        },
        servers = array({ { url = "http://127.0.0.1:8001" } }),
        paths = paths,
        components = { schemas = schemas, responses = error_responses(), headers = HEADER_DEFS,
                       parameters = page_param_defs() },
    }
    return document_cache
end

--------------------------------------------------------------------------------
-- JSON text, stable: keys sorted, two-space indents.

local function is_array(t)
    if getmetatable(t) == array_mt then return true end
    return next(t) ~= nil and #t > 0
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        return ESCAPES[c] or fmt("\\u%04x", byte(c))
    end) .. '"'
end

local function encode(v, indent, out)
    local t = type(v)
    if v == null then
        out[#out + 1] = "null"
    elseif t == "string" then
        out[#out + 1] = encode_string(v)
    elseif t == "number" then
        out[#out + 1] = (floor(v) == v and v < 2 ^ 63 and v > -2 ^ 63) and fmt("%.0f", v) or fmt("%.17g", v)
    elseif t == "boolean" then
        out[#out + 1] = tostring(v)
    elseif t == "table" then
        local inner = indent .. "  "
        if is_array(v) then
            if #v == 0 then
                out[#out + 1] = "[]"
                return
            end
            out[#out + 1] = "[\n"
            for i = 1, #v do
                out[#out + 1] = inner
                encode(v[i], inner, out)
                out[#out + 1] = i < #v and ",\n" or "\n"
            end
            out[#out + 1] = indent .. "]"
        else
            local keys = {}
            for k in pairs(v) do keys[#keys + 1] = k end
            sort(keys)
            if #keys == 0 then
                out[#out + 1] = "{}"
                return
            end
            out[#out + 1] = "{\n"
            for i, k in ipairs(keys) do
                out[#out + 1] = inner .. encode_string(k) .. ": "
                encode(v[k], inner, out)
                out[#out + 1] = i < #keys and ",\n" or "\n"
            end
            out[#out + 1] = indent .. "}"
        end
    else
        error("gateway.openapi: cannot encode a " .. t, 0)
    end
end

local json_cache

function _M.json()
    if not json_cache then
        local out = {}
        encode(_M.document(), "", out)
        out[#out + 1] = "\n"
        json_cache = concat(out)
    end
    return json_cache
end

return _M
