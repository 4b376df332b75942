// permissions:
const MAX_LENGTH = 80;

function slugify(text) {
  return String(text)
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, MAX_LENGTH);
}

function run(args) {
  const words = Array.isArray(args.texts) ? args.texts : [args.text];
  return { slugs: words.map(slugify) };
}

module.exports = { slugify, run };
