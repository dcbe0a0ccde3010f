// Two rules of @redocly/cli 2.x for the OpenAPI lint (redocly.yaml), which runs @redocly/cli 1.x:
// 2.x needs Node >= 20.19 and the tests run on Debian bookworm's Node 18 (issue 17). Ported from
// @redocly/openapi-core 2.11.1 (MIT, https://github.com/Redocly/redocly-cli), lib/rules/common/:
//   no-required-schema-properties-undefined   every name in `required` is a property of the schema,
//     of its allOf/anyOf/oneOf members, or, for a member of a composition (e.g. a oneOf branch
//     `required: [image]`), of the schema it is composed into. 1.x's rule does not look at that
//     parent and flags openapi.yaml's SanityJson (oneOf: [{required: [images]}, {required: [image]}]),
//     which is valid JSON Schema; redocly.yaml turns 1.x's rule off and this one on.
//   no-duplicated-tag-names                    no two tags of the document have the same name
//     (a warning in 2.x's `recommended`; redocly.yaml makes it an error).
'use strict';

const isRef = (node) => node !== null && typeof node === 'object' && typeof node.$ref === 'string';
const getOwn = (obj, key) => (Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined);

function NoRequiredSchemaPropertiesUndefined() {
  const parents = [];
  return {
    Schema: {
      leave() {
        parents.pop();
      },
      enter(schema, { location, report, resolve }) {
        parents.push(schema);
        if (!schema.required) return;
        const visited = new Set();
        // the properties a schema declares itself and through allOf (and, at the first level, the
        // anyOf/oneOf branches)
        const elevate = (s, from, firstLevelExclusive = true) => {
          if (!s || typeof s !== 'object' || visited.has(s)) return {};
          visited.add(s);
          if (isRef(s)) {
            const r = resolve(s, from);
            return elevate(r.node, r.location && r.location.source.absoluteRef);
          }
          return Object.assign({}, s.properties,
            ...((s.allOf || []).map((m) => elevate(m, from))),
            ...((firstLevelExclusive && s.anyOf) || []).map((m) => elevate(m, from)),
            ...((firstLevelExclusive && s.oneOf) || []).map((m) => elevate(m, from)));
        };
        // a member of allOf/anyOf/oneOf (pointer .../oneOf/1) also has its parent's properties,
        // and so on up while the parent is itself a member
        const step = 2;
        const parentAt = (i) => (parents.length < i + 1 ? undefined : parents[parents.length - (i + 1)]);
        const parentProps = (ptr, depth = 0) => {
          const member = ptr.length > step && !isNaN(parseInt(ptr[ptr.length - 1], 10)) &&
            /(allOf|oneOf|anyOf)/.test(ptr[ptr.length - step]);
          const parent = member ? parentAt(++depth) : undefined;
          const grand = ptr.length >= 2 * step ? parentProps(ptr.slice(0, -step), depth) : {};
          return parent ? { ...elevate(parent, undefined, false), ...grand } : undefined;
        };
        const own = elevate(schema);
        const inherited = parentProps(location.pointer.split('/'));
        schema.required.forEach((name, i) => {
          if ((!own || getOwn(own, name) === undefined) && (!inherited || getOwn(inherited, name) === undefined)) {
            report({ message: `Required property '${name}' is undefined.`, location: location.child(['required', i]) });
          }
        });
      },
    },
  };
}

function NoDuplicatedTagNames() {
  const seen = new Set();
  return {
    Tag: {
      leave(tag, { report, location }) {
        if (seen.has(tag.name)) report({ message: `Duplicate tag name found: '${tag.name}'.`, location });
        else seen.add(tag.name);
      },
    },
  };
}

module.exports = {
  id: 'explaind',
  rules: {
    oas3: {
      'no-required-schema-properties-undefined': NoRequiredSchemaPropertiesUndefined,
      'no-duplicated-tag-names': NoDuplicatedTagNames,
    },
  },
};
