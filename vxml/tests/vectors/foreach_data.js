function fromScript(n) { return 'x' + n * 21; }
