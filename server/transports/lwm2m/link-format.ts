/**
 * CoRE Link Format (RFC 6690 §2), strict: a registration payload that does not follow the grammar
 * is refused with a LinkFormatError saying where (the endpoint answers 4.00 Bad Request).
 */
export interface Link {
  uri: string;
  /** Parameters in order; a parameter without `=value` has the value `null`. */
  params: Array<{ name: string; value: string | null }>;
}

export class LinkFormatError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(`Malformed link format at character ${offset}: ${message}`);
    this.name = 'LinkFormatError';
  }
}

// RFC 6690 §2 and RFC 5988 §5: parmname and ptoken characters.
const PARMNAME = /[A-Za-z0-9!#$&+\-.^_`|~]/;
const PTOKEN = /[A-Za-z0-9!#$%&'()*+\-./:<=>?@[\]^_`{|}~]/;

export function parseLinkFormat(text: string): Link[] {
  const links: Link[] = [];
  if (text === '') return links;
  let i = 0;
  const fail = (message: string): never => {
    throw new LinkFormatError(message, i);
  };
  for (;;) {
    if (text[i] !== '<') fail(`expected "<" to open a link, found ${describe(text[i])}`);
    const close = text.indexOf('>', i + 1);
    if (close < 0) fail('a "<" without its ">"');
    const uri = text.slice(i + 1, close);
    if (/[\s<"]/.test(uri)) fail(`URI-Reference "${uri}" holds a space, "<" or quote`);
    i = close + 1;
    const params: Link['params'] = [];
    while (text[i] === ';') {
      i++;
      const start = i;
      while (i < text.length && PARMNAME.test(text[i] as string)) i++;
      if (i === start) fail(`expected a parameter name after ";", found ${describe(text[i])}`);
      const name = text.slice(start, i);
      let value: string | null = null;
      if (text[i] === '=') {
        i++;
        value = text[i] === '"' ? quoted() : token();
      }
      params.push({ name, value });
    }
    links.push({ uri, params });
    if (i === text.length) return links;
    if (text[i] !== ',') fail(`expected "," or ";" after a link, found ${describe(text[i])}`);
    i++;
  }

  function quoted(): string {
    let out = '';
    i++; // the opening quote
    for (;;) {
      const c = text[i];
      if (c === undefined) return fail('a quoted string without its closing quote');
      if (c === '"') {
        i++;
        return out;
      }
      if (c === '\\') {
        const next = text[i + 1];
        if (next === undefined) return fail('a backslash at the end of the payload');
        out += next;
        i += 2;
      } else {
        out += c;
        i++;
      }
    }
  }

  function token(): string {
    const start = i;
    while (i < text.length && PTOKEN.test(text[i] as string)) i++;
    if (i === start) fail(`expected a value after "=", found ${describe(text[i])}`);
    return text.slice(start, i);
  }
}

function describe(c: string | undefined): string {
  return c === undefined ? 'the end of the payload' : JSON.stringify(c);
}

/** One parameter's value; `undefined` when absent, `null` when present without a value. */
export function paramOf(link: Link, name: string): string | null | undefined {
  const p = link.params.find((x) => x.name === name);
  return p ? p.value : undefined;
}
