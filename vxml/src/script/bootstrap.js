// The data model's JS half (VoiceXML 2.0 §5.1), evaluated once per context.
// Installs `__vxml` (non-enumerable on the global object): the scope stack the Rust side
// opens `with(__vxml.s[i])` over, host helpers, and the trap that turns writes and reads of
// undeclared names into ReferenceErrors (error.semantic).
(function () {
  'use strict';
  const G = globalThis;
  const hasOwn = Object.prototype.hasOwnProperty;
  const stack = [];
  const kinds = [];
  const api = Object.create(null);
  api.s = stack;
  // Compiled evaluations, by the index the Rust side keeps (`FunctionCache`).
  api.fns = [];

  // Read-only values (session.*, shadow variables, lastresult$): writes and deletes throw,
  // except a write of the value already held (Object.defineProperty allows that too).
  const MARK = Symbol('read-only');
  const denied = function (key) {
    throw new TypeError("'" + String(key) + "' is read-only; it is set by the platform");
  };
  const readOnlyTraps = {
    set(target, key, value) {
      if (hasOwn.call(target, key) && Object.is(target[key], value)) return true;
      denied(key);
    },
    defineProperty(target, key) { denied(key); },
    deleteProperty(target, key) { denied(key); },
    setPrototypeOf() { denied('__proto__'); },
  };
  const readOnly = function (value, seen) {
    if (value === null || typeof value !== 'object') return value;
    for (let i = 0; i < seen.length; i += 2) if (seen[i] === value) return seen[i + 1];
    // Already a read-only proxy.
    if (value[MARK] === true) return value;
    const proxy = new Proxy(value, readOnlyTraps);
    seen.push(value, proxy);
    Object.defineProperty(value, MARK, { value: true });
    for (const key of Object.getOwnPropertyNames(value)) {
      const d = Object.getOwnPropertyDescriptor(value, key);
      if (d && 'value' in d && d.value !== null && typeof d.value === 'object') {
        Object.defineProperty(value, key, { value: readOnly(d.value, seen) });
      }
    }
    return proxy;
  };
  // A binding the application can read but not assign (names ending in '$').
  const defineReadOnly = function (scope, name, value) {
    if (name === 'lastresult$' && Array.isArray(value) && value[0] !== null &&
        typeof value[0] === 'object') {
      // §5.1.5: lastresult$.utterance etc. are those of lastresult$[0].
      for (const key of Object.keys(value[0])) if (!hasOwn.call(value, key)) value[key] = value[0][key];
    }
    const held = readOnly(value, []);
    Object.defineProperty(scope, name, {
      get() { return held; },
      set(v) { if (!Object.is(v, held)) denied(name); },
      enumerable: true,
      configurable: true,
    });
  };
  const isHostOwned = function (name) { return name.charAt(name.length - 1) === '$'; };

  api.push = function (kind, name) {
    const o = Object.create(null);
    if (name) Object.defineProperty(o, name, { value: o, enumerable: false, configurable: true });
    stack.push(o);
    kinds.push(kind);
  };
  api.pop = function (kind) {
    const i = kinds.lastIndexOf(kind);
    if (i >= 0) { stack.length = i; kinds.length = i; }
  };
  // Declares `name` in the innermost scope of `kind` (host and <var>).
  api.declareIn = function (kind, name, value) {
    const i = kinds.lastIndexOf(kind);
    if (i < 0) throw new Error('no ' + kind + ' scope is open');
    if (isHostOwned(name)) defineReadOnly(stack[i], name, value);
    else stack[i][name] = value;
  };
  // The host's assignment: replaces a read-only binding in the scope that declared it.
  api.hostAssign = function (name, value) {
    for (let i = stack.length - 1; i >= 0; i--) {
      if (hasOwn.call(stack[i], name)) { defineReadOnly(stack[i], name, value); return; }
    }
    throw new ReferenceError("assignment to undeclared variable '" + name + "'; declare it with <var>");
  };
  // Makes the innermost scope of `kind` and everything in it read-only.
  api.seal = function (kind) {
    const i = kinds.lastIndexOf(kind);
    if (i >= 0) stack[i] = readOnly(stack[i], []);
  };
  // <script>: names the script declared are globals by now (eval declarations); move them to
  // the innermost scope so they become NEW variables there, even when an outer scope has the
  // same name. A `var` re-declaring a name of that scope keeps its value.
  api.snapshot = function () {
    const names = Object.create(null);
    for (const k of Object.getOwnPropertyNames(G)) names[k] = true;
    return names;
  };
  api.hoist = function (before) {
    const top = stack[stack.length - 1];
    for (const k of Object.getOwnPropertyNames(G)) {
      if (before[k] === true) continue;
      const v = G[k];
      delete G[k];
      if (top && (typeof v === 'function' || !hasOwn.call(top, k))) top[k] = v;
    }
  };
  // Reads and assignments of a declared name path (`x`, `dialog.x`, `pin$.utterance`)
  // without compiling anything: the variable is found as the `with` chain finds it, and a
  // write that sloppy code would silently drop (a non-writable property, a primitive's) is
  // dropped; read-only values still throw from their own traps and setters.
  const holder = function (name, writing) {
    for (let i = stack.length - 1; i >= 0; i--) if (name in stack[i]) return stack[i];
    if (name in G) return G;
    if (writing) {
      throw new ReferenceError("assignment to undeclared variable '" + name + "'; declare it with <var>");
    }
    throw new ReferenceError("'" + name + "' is not defined; declare it with <var>");
  };
  api.read = function (path) {
    const names = path.split('.');
    let value = holder(names[0], false)[names[0]];
    for (let i = 1; i < names.length; i++) value = value[names[i]];
    return value;
  };
  api.assignIn = function (path, value) {
    const names = path.split('.');
    const last = names.length - 1;
    let target = holder(names[0], true);
    for (let i = 0; i < last; i++) target = target[names[i]];
    if (target === null || target === undefined) {
      throw new TypeError("cannot set '" + names[last] + "' of " + target);
    }
    if (typeof target === 'object' || typeof target === 'function') {
      Reflect.set(target, names[last], value);
    }
  };
  api.probe = function (read) {
    try { return read(); } catch (e) { if (e instanceof ReferenceError) return undefined; throw e; }
  };
  Object.defineProperty(G, '__vxml', { value: api, enumerable: false });

  // Sloppy code would create a global on assignment to an undeclared name: the global
  // object's prototype throws instead, for writes and for reads of unknown names.
  const trap = new Proxy(Object.create(Object.getPrototypeOf(G)), {
    get(target, key, receiver) {
      if (typeof key !== 'string' || key in target) return Reflect.get(target, key, receiver);
      throw new ReferenceError("'" + key + "' is not defined; declare it with <var>");
    },
    set(target, key) {
      throw new ReferenceError("assignment to undeclared variable '" + String(key) + "'; declare it with <var>");
    },
  });
  Object.setPrototypeOf(G, trap);
})();
