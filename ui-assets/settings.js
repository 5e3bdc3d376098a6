/*
 * featpkg settings page (MikoPBX and FreePBX module pages).
 *
 * Plain, dependency-free JavaScript: no framework, no build step. The PBX's
 * wrapper page prints ui-assets/settings.html (root #featpkg-settings with
 * data-pbx="mikopbx"|"freepbx") and loads this file and settings.css; the page
 * starts on DOMContentLoaded. In Node (unit tests) only the pure functions at
 * the end are exported.
 *
 * Security: every piece of text that comes from the server (feature ids,
 * parameter names, help, values, messages, diffs) is put into the page with
 * textContent or as an attribute value, never parsed as HTML.
 *
 * Server API (one POST per action, form-encoded; see callAction):
 *   schema, status, preview, apply, remove, rollback, job.
 */
var FeatpkgSettings = (function () {
  'use strict';

  // ---- strings ---------------------------------------------------------------
  // Every UI string, in one table. `ru` must have every key `en` has (a unit
  // test checks it). `{name}` placeholders are filled by t().

  var STRINGS = {
    en: {
      loading: 'Loading…',
      title_fallback: 'Feature packages',
      bundle_version: 'version {version}',
      refresh: 'Refresh',
      no_pbx: 'This page does not know which PBX it runs on (its data-pbx attribute is empty): the module is not installed correctly.',
      load_failed: 'Could not load the settings: {message}',
      status_failed: 'Could not read what is installed: {message}',
      status_busy: 'A change is running on the PBX: what is installed is shown when it has finished.',
      status_unknown: 'status unknown',
      retry: 'Try again',
      features_none: 'This bundle has no features.',
      installed: 'installed, version {version}',
      not_installed: 'not installed',
      upgrade: 'update available: {from} → {to}',
      unsupported: 'Not available on this PBX: {reason}',
      install_label: 'Install',
      keep_label: 'Keep installed (apply these values)',
      unchecked_installed_note: 'Not selected: Apply leaves this feature as it is. To uninstall it, use Remove.',
      params_title: 'Parameters',
      params_count: '{count} parameters, {set} set',
      no_params: 'This feature has no parameters.',
      required_mark_title: 'required',
      set_mark: 'set',
      set_mark_title: 'differs from the default, or was set before',
      changed_mark: 'changed',
      changed_mark_title: 'changed on this page, not applied yet',
      default_is: 'Default: {value}',
      default_empty: 'Default: empty',
      default_same_as: 'Default: the same as {name}',
      default_none_required: 'No default: a value is required',
      default_no_rules: 'Default: no rules',
      range: 'Allowed: {min} to {max}',
      placeholder_same_as: 'same as {name}',
      placeholder_required: 'required',
      option_default: '{value} (default)',
      option_unknown: '{value} (not in the list)',
      dest_context: 'context',
      dest_exten: 'extension',
      dest_priority: 'priority',
      dest_none_hint: 'All three empty: no destination.',
      rules_row: 'Rule',
      rules_queue: 'Queue',
      rules_status: 'Status',
      rules_destination: 'Destination',
      rules_add: 'Add rule',
      rules_remove: 'Remove rule',
      rules_empty: 'No rules yet.',
      rules_choose_status: '— choose —',
      rules_invalid: 'The saved value is not a valid list of rules; it is kept as text below. Correct it, or start a new table.',
      rules_reset: 'Start an empty table (discards this text)',
      drift_title: 'Changed outside featpkg',
      drift_other_title: 'Changed outside featpkg (other installed bundles)',
      drift_kind_modified: 'changed by hand',
      drift_kind_missing: 'missing',
      drift_kind_markers: 'markers damaged',
      'drift_kind_not-applied': 'not used by the PBX',
      remove: 'Remove',
      remove_confirm: 'Remove {feature}? featpkg takes out exactly what it added and reloads the PBX.',
      remove_yes: 'Yes, remove',
      cancel: 'Cancel',
      preview: 'Preview changes',
      apply: 'Apply',
      rollback: 'Roll back last change',
      rollback_confirm: 'Undo the last change featpkg made (an install, upgrade or removal), restoring the files exactly as they were?',
      rollback_yes: 'Yes, roll back',
      allow_restart: 'Allow restarting Asterisk (ends every call)',
      allow_restart_help: 'Needed only when MikoPBX would restart Asterisk instead of reloading it (its network settings changed since Asterisk started). Without this, featpkg refuses such a change and says why.',
      toolbar_note: 'Preview and Apply use the selected features with the values above; featpkg checks every value again.',
      nothing_selected: 'Select at least one feature to install.',
      busy_preview: 'Preparing the preview…',
      preview_title: 'Preview: nothing has been changed yet',
      preview_nothing: 'Nothing would change.',
      preview_stale: 'The form changed after this preview: preview again to see the new result.',
      warnings_title: 'Warnings',
      changes_title: 'Files that would change',
      changes_done_title: 'What changed',
      job_apply: 'Applying the selected features',
      job_remove: 'Removing {feature}',
      job_rollback: 'Rolling back the last change',
      job_resume: 'A change started earlier is running',
      step_plan: 'Plan (check everything; nothing touched yet)',
      step_write: 'Write the files',
      step_reload: 'Reload the PBX',
      step_verify: 'Verify',
      step_done: 'done',
      step_active: 'in progress…',
      step_failed: 'failed',
      step_pending: 'waiting',
      step_skipped: 'not needed',
      step_unreached: 'not reached',
      job_done: 'Done.',
      job_failed: 'The change failed.',
      job_details: 'Details',
      reload_title: 'What the PBX said while reloading',
      refreshing: 'Refreshing the status…',
      refused_title: 'featpkg refused the change',
      show_field: 'Show the field',
      err_network: 'The PBX did not answer ({detail}).',
      err_http: 'The PBX answered with HTTP {status}.',
      err_not_json: 'The PBX answered with HTTP {status} and no readable reply.',
      err_http_401: 'Not signed in (HTTP 401).',
      err_http_403: 'Refused (HTTP 403).',
      hint_401: 'Your session may have ended: reload the page and sign in again.',
      hint_403: 'The PBX refused the request: check that you are signed in as an administrator and opened this page at the PBX\'s own address.',
      err_no_job: 'The PBX did not start the change (its answer has no job id).',
      err_poll_lost: 'Lost contact with the running change: {message}. It goes on without this page; refresh to see the result.',
      hint_required: 'A value is required.',
      hint_integer: 'Must be a whole number.',
      hint_bad_number: 'Not a number: the default is used unless you correct it.',
      hint_range: 'Must be from {min} to {max}.',
      hint_enum: 'Must be one of: {values}.',
      hint_extension: 'Digits only, 1 to 20 of them.',
      hint_service_code: '1 to 10 of the characters 0-9 * #.',
      hint_digit_pattern: 'Digits, or _ followed by X, Z, N, digits and [a-b] classes.',
      hint_context: 'Latin letters, digits, - _ . (at most 79); not general or globals.',
      hint_sound: 'A sound name: Latin letters, digits, - _ (no path, no extension).',
      hint_word: 'Latin letters, digits, - _ (at most 64).',
      hint_var_name: 'A Latin letter or _, then letters, digits and _.',
      hint_endpoint_list: 'Endpoint names separated by commas: Latin letters, digits, - _ .',
      hint_destination: 'Give the context, extension and priority, or leave all three empty.',
      hint_rules_json: 'Not a JSON array of rules.',
      hint_rule_queue: 'Rule {row}: the queue must be digits.',
      hint_rule_status: 'Rule {row}: choose a status.',
      hint_rule_destination: 'Rule {row}: give the context, extension and priority.',
      hint_rule_duplicate: 'Rule {row}: a second rule for queue {queue} with status {status}.'
    },
    ru: {
      loading: 'Загрузка…',
      title_fallback: 'Пакеты функций',
      bundle_version: 'версия {version}',
      refresh: 'Обновить',
      no_pbx: 'Страница не знает, на какой АТС она работает (атрибут data-pbx пуст): модуль установлен неправильно.',
      load_failed: 'Не удалось загрузить настройки: {message}',
      status_failed: 'Не удалось узнать, что установлено: {message}',
      status_busy: 'На АТС выполняется изменение: что установлено, будет показано, когда оно завершится.',
      status_unknown: 'состояние неизвестно',
      retry: 'Повторить',
      features_none: 'В этом пакете нет функций.',
      installed: 'установлена, версия {version}',
      not_installed: 'не установлена',
      upgrade: 'есть обновление: {from} → {to}',
      unsupported: 'Недоступна на этой АТС: {reason}',
      install_label: 'Установить',
      keep_label: 'Оставить установленной (применить эти значения)',
      unchecked_installed_note: 'Не выбрана: «Применить» оставит эту функцию как есть. Чтобы удалить её, нажмите «Удалить».',
      params_title: 'Параметры',
      params_count: 'параметров: {count}, задано: {set}',
      no_params: 'У этой функции нет параметров.',
      required_mark_title: 'обязательный',
      set_mark: 'задано',
      set_mark_title: 'отличается от значения по умолчанию или было задано раньше',
      changed_mark: 'изменено',
      changed_mark_title: 'изменено на этой странице, ещё не применено',
      default_is: 'По умолчанию: {value}',
      default_empty: 'По умолчанию: пусто',
      default_same_as: 'По умолчанию: то же, что {name}',
      default_none_required: 'Значения по умолчанию нет: укажите значение',
      default_no_rules: 'По умолчанию: правил нет',
      range: 'Допустимо: от {min} до {max}',
      placeholder_same_as: 'как {name}',
      placeholder_required: 'обязательно',
      option_default: '{value} (по умолчанию)',
      option_unknown: '{value} (нет в списке)',
      dest_context: 'контекст',
      dest_exten: 'номер',
      dest_priority: 'приоритет',
      dest_none_hint: 'Все три поля пусты: назначения нет.',
      rules_row: 'Правило',
      rules_queue: 'Очередь',
      rules_status: 'Статус',
      rules_destination: 'Назначение',
      rules_add: 'Добавить правило',
      rules_remove: 'Удалить правило',
      rules_empty: 'Правил пока нет.',
      rules_choose_status: '— выберите —',
      rules_invalid: 'Сохранённое значение не является списком правил; оно оставлено текстом ниже. Исправьте его или начните новую таблицу.',
      rules_reset: 'Начать пустую таблицу (этот текст будет отброшен)',
      drift_title: 'Изменено в обход featpkg',
      drift_other_title: 'Изменено в обход featpkg (другие установленные пакеты)',
      drift_kind_modified: 'изменено вручную',
      drift_kind_missing: 'отсутствует',
      drift_kind_markers: 'повреждены метки',
      'drift_kind_not-applied': 'не используется АТС',
      remove: 'Удалить',
      remove_confirm: 'Удалить {feature}? featpkg уберёт ровно то, что добавил, и перезагрузит настройки АТС.',
      remove_yes: 'Да, удалить',
      cancel: 'Отмена',
      preview: 'Предпросмотр изменений',
      apply: 'Применить',
      rollback: 'Откатить последнее изменение',
      rollback_confirm: 'Отменить последнее изменение featpkg (установку, обновление или удаление) и вернуть файлы в точности такими, какими они были?',
      rollback_yes: 'Да, откатить',
      allow_restart: 'Разрешить перезапуск Asterisk (все звонки прервутся)',
      allow_restart_help: 'Нужно, только если MikoPBX вместо перезагрузки настроек перезапустит Asterisk (сетевые настройки менялись после его запуска). Без этого разрешения featpkg откажется от такого изменения и объяснит почему.',
      toolbar_note: '«Предпросмотр» и «Применить» работают с выбранными функциями и значениями выше; featpkg ещё раз проверяет каждое значение.',
      nothing_selected: 'Выберите хотя бы одну функцию для установки.',
      busy_preview: 'Готовим предпросмотр…',
      preview_title: 'Предпросмотр: пока ничего не изменено',
      preview_nothing: 'Ничего не изменится.',
      preview_stale: 'Форма изменилась после предпросмотра: запустите его снова, чтобы увидеть новый результат.',
      warnings_title: 'Предупреждения',
      changes_title: 'Файлы, которые изменятся',
      changes_done_title: 'Что изменено',
      job_apply: 'Применение выбранных функций',
      job_remove: 'Удаление {feature}',
      job_rollback: 'Откат последнего изменения',
      job_resume: 'Выполняется изменение, начатое ранее',
      step_plan: 'План (всё проверить, пока ничего не трогая)',
      step_write: 'Запись файлов',
      step_reload: 'Перезагрузка настроек АТС',
      step_verify: 'Проверка',
      step_done: 'готово',
      step_active: 'выполняется…',
      step_failed: 'ошибка',
      step_pending: 'ожидает',
      step_skipped: 'не требуется',
      step_unreached: 'не выполнялось',
      job_done: 'Готово.',
      job_failed: 'Изменение не удалось.',
      job_details: 'Подробности',
      reload_title: 'Что ответила АТС при перезагрузке',
      refreshing: 'Обновляем состояние…',
      refused_title: 'featpkg отказался вносить изменение',
      show_field: 'Показать поле',
      err_network: 'АТС не ответила ({detail}).',
      err_http: 'АТС ответила HTTP {status}.',
      err_not_json: 'АТС ответила HTTP {status}, и ответ не удалось прочитать.',
      err_http_401: 'Вход не выполнен (HTTP 401).',
      err_http_403: 'Отказано (HTTP 403).',
      hint_401: 'Возможно, сеанс закончился: перезагрузите страницу и войдите снова.',
      hint_403: 'АТС отклонила запрос: проверьте, что вы вошли как администратор и открыли страницу по адресу самой АТС.',
      err_no_job: 'АТС не запустила изменение (в ответе нет номера задания).',
      err_poll_lost: 'Связь с выполняющимся изменением потеряна: {message}. Оно продолжается без этой страницы; обновите её, чтобы увидеть результат.',
      hint_required: 'Нужно указать значение.',
      hint_integer: 'Нужно целое число.',
      hint_bad_number: 'Это не число: пока вы его не исправите, будет использовано значение по умолчанию.',
      hint_range: 'Допустимо от {min} до {max}.',
      hint_enum: 'Допустимые значения: {values}.',
      hint_extension: 'Только цифры, от 1 до 20.',
      hint_service_code: 'От 1 до 10 символов из набора 0-9 * #.',
      hint_digit_pattern: 'Цифры или _, за которым идут X, Z, N, цифры и классы [a-b].',
      hint_context: 'Латинские буквы, цифры, - _ . (не длиннее 79); не general и не globals.',
      hint_sound: 'Имя звука: латинские буквы, цифры, - _ (без пути и расширения).',
      hint_word: 'Латинские буквы, цифры, - _ (не длиннее 64).',
      hint_var_name: 'Латинская буква или _, затем буквы, цифры и _.',
      hint_endpoint_list: 'Имена endpoint через запятую: латинские буквы, цифры, - _ .',
      hint_destination: 'Укажите контекст, номер и приоритет или оставьте все три поля пустыми.',
      hint_rules_json: 'Это не JSON-массив правил.',
      hint_rule_queue: 'Правило {row}: номер очереди должен состоять из цифр.',
      hint_rule_status: 'Правило {row}: выберите статус.',
      hint_rule_destination: 'Правило {row}: укажите контекст, номер и приоритет.',
      hint_rule_duplicate: 'Правило {row}: второе правило для очереди {queue} со статусом {status}.'
    }
  };

  /** The job steps featpkg reports, in order. */
  var STEPS = ['plan', 'write', 'reload', 'verify'];
  /** How often a running job is polled (ms). */
  var POLL_MS = 700;
  /** Consecutive failed polls (network, HTTP 5xx) before the page gives up. */
  var POLL_TOLERANCE = 10;

  // ---- small helpers -----------------------------------------------------------

  function isObject(v) {
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  }

  function own(obj, key) {
    return obj !== null && typeof obj === 'object' && Object.prototype.hasOwnProperty.call(obj, key);
  }

  function get(obj, key) {
    return own(obj, key) ? obj[key] : undefined;
  }

  /** Sets obj[key] as an own data property, even for keys like "__proto__". */
  function put(obj, key, value) {
    Object.defineProperty(obj, key, { value: value, enumerable: true, writable: true, configurable: true });
    return obj;
  }

  function str(v) {
    return v === null || v === undefined ? '' : String(v);
  }

  function isInt(v) {
    return typeof v === 'number' && isFinite(v) && Math.floor(v) === v;
  }

  // ---- language ----------------------------------------------------------------

  /** "ru-RU", "ru_ru", " RU " -> "ru"; anything that is not a language tag -> "". */
  function normalizeLang(v) {
    if (typeof v !== 'string') {
      return '';
    }
    var m = /^\s*([A-Za-z]{2,3})(?:[-_][A-Za-z0-9-_]*)?\s*$/.exec(v);
    return m ? m[1].toLowerCase() : '';
  }

  /**
   * The page's language from the sources in order of preference (the root's
   * data-lang, schema.lang, MikoPBX's globalWebAdminLanguage,
   * document.documentElement.lang): the first non-empty one decides; a
   * language without strings falls back to English.
   */
  function pickLanguage() {
    for (var i = 0; i < arguments.length; i++) {
      var code = normalizeLang(arguments[i]);
      if (code) {
        return own(STRINGS, code) ? code : 'en';
      }
    }
    return 'en';
  }

  /** The string `key` in `lang` (else English, else the key), `{name}`s filled from vars. */
  function t(lang, key, vars) {
    var table = own(STRINGS, lang) ? STRINGS[lang] : STRINGS.en;
    var s = own(table, key) ? table[key] : (own(STRINGS.en, key) ? STRINGS.en[key] : String(key));
    if (vars) {
      s = s.replace(/\{(\w+)\}/g, function (whole, name) {
        return own(vars, name) ? str(vars[name]) : whole;
      });
    }
    return s;
  }

  // ---- server calls ------------------------------------------------------------

  var ACTION_RE = /^[a-z][a-z0-9_-]{0,31}$/;

  /** The URL an action is POSTed to. */
  function actionUrl(pbx, action) {
    if (typeof action !== 'string' || !ACTION_RE.test(action)) {
      throw new Error('not an action name: ' + str(action));
    }
    if (pbx === 'mikopbx') {
      return '/pbxcore/api/modules/ModuleFeatpkg/' + action;
    }
    if (pbx === 'freepbx') {
      // Relative to the page (FreePBX's /admin/config.php).
      return 'ajax.php?module=featpkg&command=' + action;
    }
    throw new Error('unknown PBX: ' + str(pbx));
  }

  /** Form-encodes fields: objects and arrays as JSON, booleans as "1"/"0", null/undefined left out. */
  function encodeForm(fields) {
    var parts = [];
    if (!isObject(fields)) {
      return '';
    }
    Object.keys(fields).forEach(function (name) {
      var v = fields[name];
      if (v === undefined || v === null) {
        return;
      }
      if (typeof v === 'boolean') {
        v = v ? '1' : '0';
      } else if (typeof v === 'object') {
        v = JSON.stringify(v);
      } else {
        v = String(v);
      }
      parts.push(encodeURIComponent(name) + '=' + encodeURIComponent(v));
    });
    return parts.join('&');
  }

  /** Every string in a message, an array or an object of them (MikoPBX `messages`), in order. */
  function flattenMessages(m) {
    var out = [];
    (function walk(v) {
      if (v === null || v === undefined || v === '') {
        return;
      }
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
        out.push(String(v));
      } else if (Array.isArray(v)) {
        v.forEach(walk);
      } else if (typeof v === 'object') {
        Object.keys(v).forEach(function (k) {
          walk(v[k]);
        });
      }
    })(m);
    return out;
  }

  /**
   * A reply's payload, or an Error with the server's message.
   * MikoPBX: {result, data, messages}; FreePBX: {status, data, message} or,
   * from the framework, {error} with HTTP 401/403/500. json is the parsed body
   * (null when it was not JSON). The Error carries .status (HTTP status) and
   * .reply (the parsed body).
   */
  function parseReply(pbx, httpStatus, json, lang) {
    lang = lang || 'en';
    var status = Number(httpStatus) || 0;
    var httpOk = status === 0 || (status >= 200 && status < 400);
    var obj = isObject(json);
    var message = '';
    if (pbx === 'mikopbx') {
      if (obj && json.result === true && httpOk) {
        return own(json, 'data') ? json.data : null;
      }
      if (obj) {
        message = flattenMessages(json.messages).join('\n') ||
          flattenMessages(json.message).join('\n') ||
          flattenMessages(json.error).join('\n');
      }
    } else if (pbx === 'freepbx') {
      if (obj && json.status === true && httpOk) {
        return own(json, 'data') ? json.data : null;
      }
      if (obj) {
        message = flattenMessages(json.message).join('\n') ||
          flattenMessages(json.error).join('\n') ||
          flattenMessages(json.messages).join('\n');
      }
    } else {
      throw new Error('unknown PBX: ' + str(pbx));
    }
    if (!message) {
      if (status === 401) {
        message = t(lang, 'err_http_401');
      } else if (status === 403) {
        message = t(lang, 'err_http_403');
      } else if (!obj) {
        message = t(lang, 'err_not_json', { status: status });
      } else {
        message = t(lang, 'err_http', { status: status });
      }
    }
    var err = new Error(message);
    err.status = status;
    err.reply = json;
    throw err;
  }

  /**
   * POSTs one action and returns its payload, or throws an Error with the
   * server's message (.status = HTTP status, 0 when the PBX did not answer).
   * options: {window, fetch, lang} (the browser's by default).
   */
  async function callAction(pbx, action, fields, options) {
    options = options || {};
    var win = options.window || (typeof window !== 'undefined' ? window : {});
    var doFetch = options.fetch || (typeof fetch === 'function' ? fetch : null);
    var lang = options.lang || 'en';
    var url = actionUrl(pbx, action);
    var body = encodeForm(fields || {});
    for (var attempt = 0; ; attempt++) {
      var headers = {
        'Content-Type': 'application/x-www-form-urlencoded; charset=UTF-8',
        'Accept': 'application/json',
        'X-Requested-With': 'XMLHttpRequest'
      };
      if (pbx === 'mikopbx') {
        // MikoPBX 2026.1: JWT in memory (token-manager.js); 2024.1: the session cookie.
        if (win.tokenManagerReady) {
          try {
            await win.tokenManagerReady;
          } catch (e) {
            // TokenManager sends the browser to the login page itself.
          }
        }
        var tm = win.TokenManager;
        if (tm && typeof tm.accessToken === 'string' && tm.accessToken !== '') {
          headers.Authorization = 'Bearer ' + tm.accessToken;
        }
      }
      var res;
      try {
        res = await doFetch(url, {
          method: 'POST',
          headers: headers,
          body: body,
          credentials: 'same-origin',
          cache: 'no-store'
        });
      } catch (e) {
        var netErr = new Error(t(lang, 'err_network', { detail: (e && e.message) || String(e) }));
        netErr.status = 0;
        throw netErr;
      }
      if (res.status === 401 && attempt === 0 && pbx === 'mikopbx' && win.TokenManager &&
          typeof win.TokenManager.silentRefresh === 'function') {
        // The 15-minute access token expired while the page stayed open: refresh once, retry.
        try {
          await win.TokenManager.silentRefresh();
        } catch (e) {
          // Fall through to the retry, which reports the 401.
        }
        continue;
      }
      var text = '';
      try {
        text = await res.text();
      } catch (e) {
        text = '';
      }
      var json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch (e) {
        json = null;
      }
      return parseReply(pbx, res.status, json, lang);
    }
  }

  /** data-pbx, else guessed from the PBX's globals (MikoPBX: globalRootUrl/globalModuleUniqueId; FreePBX: fpbx/FreePBX). */
  function detectPbx(attr, globals) {
    if (attr === 'mikopbx' || attr === 'freepbx') {
      return attr;
    }
    globals = globals || {};
    if (globals.globalModuleUniqueId !== undefined || globals.globalRootUrl !== undefined) {
      return 'mikopbx';
    }
    if (globals.fpbx !== undefined || globals.FreePBX !== undefined) {
      return 'freepbx';
    }
    return '';
  }

  // ---- destinations and queue rules ------------------------------------------------

  /** "context,exten,priority" -> parts; a missing part is ""; extra commas stay in the priority (so join gives it back). */
  function splitDestination(value) {
    var s = str(value);
    if (s.trim() === '') {
      return { context: '', exten: '', priority: '' };
    }
    var parts = s.split(',');
    return {
      context: parts[0] === undefined ? '' : parts[0],
      exten: parts[1] === undefined ? '' : parts[1],
      priority: parts.length > 2 ? parts.slice(2).join(',') : ''
    };
  }

  /** Parts -> "context,exten,priority", each trimmed; all empty -> "" (no destination). */
  function joinDestination(parts) {
    parts = parts || {};
    var c = str(parts.context).trim();
    var e = str(parts.exten).trim();
    var p = str(parts.priority).trim();
    if (c === '' && e === '' && p === '') {
      return '';
    }
    return c + ',' + e + ',' + p;
  }

  /**
   * queue_rules text -> {rows: [{queue, status, destination}], error}. Empty
   * text is no rules. error is true (rows empty) when the text is not a JSON
   * array of objects; fields other than queue, status, destination are left
   * out, non-string values become strings.
   */
  function queueRulesFromJson(text) {
    var s = str(text).trim();
    if (s === '') {
      return { rows: [], error: false };
    }
    var value;
    try {
      value = JSON.parse(s);
    } catch (e) {
      return { rows: [], error: true };
    }
    if (!Array.isArray(value)) {
      return { rows: [], error: true };
    }
    var rows = [];
    for (var i = 0; i < value.length; i++) {
      var item = value[i];
      if (!isObject(item)) {
        return { rows: [], error: true };
      }
      rows.push({
        queue: scalar(get(item, 'queue')),
        status: scalar(get(item, 'status')),
        destination: scalar(get(item, 'destination'))
      });
    }
    return { rows: rows, error: false };
  }

  function scalar(v) {
    if (v === null || v === undefined) {
      return '';
    }
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }

  /** Rows -> the JSON array text featpkg reads (every row kept, in order, values trimmed). */
  function queueRulesToJson(rows) {
    return JSON.stringify((rows || []).map(function (r) {
      r = r || {};
      return {
        queue: str(r.queue).trim(),
        status: str(r.status).trim(),
        destination: str(r.destination).trim()
      };
    }));
  }

  // ---- parameters ------------------------------------------------------------------

  /** Text types: what featpkg allows (a hint only; featpkg checks again). */
  var TEXT_TYPES = {
    extension: { maxLength: 20, inputMode: 'numeric', re: /^[0-9]{1,20}$/, hint: 'hint_extension' },
    service_code: { maxLength: 10, inputMode: 'tel', re: /^[0-9*#]{1,10}$/, hint: 'hint_service_code' },
    digit_pattern: { maxLength: 41, inputMode: null, re: null, hint: 'hint_digit_pattern' },
    context: { maxLength: 79, inputMode: null, re: /^[A-Za-z0-9_.-]{1,79}$/, hint: 'hint_context' },
    sound: { maxLength: 64, inputMode: null, re: /^[A-Za-z0-9_-]{1,64}$/, hint: 'hint_sound' },
    word: { maxLength: 64, inputMode: null, re: /^[A-Za-z0-9_-]{1,64}$/, hint: 'hint_word' },
    var_name: { maxLength: 64, inputMode: null, re: /^[A-Za-z_][A-Za-z0-9_]{0,63}$/, hint: 'hint_var_name' },
    endpoint_list: { maxLength: null, inputMode: null, re: null, hint: 'hint_endpoint_list' }
  };

  function digitPatternOk(v) {
    if (/^[0-9]{1,20}$/.test(v)) {
      return true;
    }
    return v.length >= 2 && v.length <= 41 && /^_(?:[XZNxzn0-9]|\[[0-9-]*[0-9][0-9-]*\])+$/.test(v);
  }

  function contextOk(v) {
    return /^[A-Za-z0-9_.-]{1,79}$/.test(v) && !/^(general|globals)$/i.test(v);
  }

  function destinationOk(v) {
    if (v === '') {
      return true;
    }
    var parts = v.split(',');
    if (parts.length !== 3) {
      return false;
    }
    var extenOk = /^[0-9*#]{1,10}$/.test(parts[1]) || parts[1] === 's' || digitPatternOk(parts[1]);
    var prioOk = /^[1-9][0-9]*$/.test(parts[2]) || /^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(parts[2]);
    return contextOk(parts[0]) && extenOk && prioOk;
  }

  /**
   * What control a parameter gets. lang only affects the texts (placeholder,
   * option labels, default label). Returns
   * {name, type, control: "text"|"number"|"select"|"destination"|"queue_rules",
   *  inputType, min, max, step, options: [{value, label, isDefault}]|null,
   *  maxLength, inputMode, list, required, defaultValue, defaultFrom,
   *  placeholder, defaultLabel, known}.
   */
  function paramControlSpec(param, lang) {
    lang = lang || 'en';
    param = param || {};
    var type = str(param.type);
    var def = str(param.default);
    var defaultFrom = typeof param.default_from === 'string' && param.default_from !== '' ? param.default_from : null;
    var spec = {
      name: str(param.name),
      type: type,
      control: 'text',
      inputType: 'text',
      min: null,
      max: null,
      step: null,
      options: null,
      maxLength: null,
      inputMode: null,
      list: false,
      required: param.required === true,
      defaultValue: def,
      defaultFrom: defaultFrom,
      placeholder: '',
      defaultLabel: '',
      known: true
    };
    if (type === 'integer') {
      spec.control = 'number';
      spec.inputType = 'number';
      spec.min = isInt(param.min) ? param.min : null;
      spec.max = isInt(param.max) ? param.max : null;
      spec.step = 1;
      spec.inputMode = 'numeric';
    } else if (type === 'enum' && Array.isArray(param.values) && param.values.length > 0) {
      spec.control = 'select';
      var seen = {};
      spec.options = [];
      param.values.forEach(function (v) {
        var value = str(v);
        if (own(seen, value)) {
          return;
        }
        put(seen, value, true);
        spec.options.push({
          value: value,
          label: value === def ? t(lang, 'option_default', { value: value }) : value,
          isDefault: value === def
        });
      });
    } else if (type === 'destination') {
      spec.control = 'destination';
    } else if (type === 'queue_rules') {
      spec.control = 'queue_rules';
    } else if (own(TEXT_TYPES, type)) {
      spec.maxLength = TEXT_TYPES[type].maxLength;
      spec.inputMode = TEXT_TYPES[type].inputMode;
      spec.list = type === 'endpoint_list';
    } else {
      // A type this page does not know (a newer featpkg): a plain text box.
      spec.known = type === 'enum' ? true : false;
    }
    if (spec.control !== 'select' && spec.control !== 'queue_rules') {
      if (def !== '') {
        spec.placeholder = def;
      } else if (defaultFrom) {
        spec.placeholder = t(lang, 'placeholder_same_as', { name: defaultFrom });
      } else if (spec.required) {
        spec.placeholder = t(lang, 'placeholder_required');
      }
    }
    if (spec.control === 'queue_rules' && queueRulesFromJson(def).rows.length === 0) {
      spec.defaultLabel = t(lang, 'default_no_rules');
    } else if (def !== '') {
      spec.defaultLabel = t(lang, 'default_is', { value: def });
    } else if (defaultFrom) {
      spec.defaultLabel = t(lang, 'default_same_as', { name: defaultFrom });
    } else if (spec.required) {
      spec.defaultLabel = t(lang, 'default_none_required');
    } else {
      spec.defaultLabel = t(lang, 'default_empty');
    }
    return spec;
  }

  /** A control's text as featpkg should get it: trimmed; a comma list without blanks or spaces. */
  function normalizeRaw(param, raw) {
    var s = str(raw);
    if (param && param.type === 'endpoint_list') {
      return s.split(',').map(function (x) {
        return x.trim();
      }).filter(function (x) {
        return x !== '';
      }).join(',');
    }
    return s.trim();
  }

  /** The value a control stands for: its text, or the default when empty. */
  function effectiveValue(param, raw) {
    var v = normalizeRaw(param, raw);
    return v === '' ? str(param && param.default) : v;
  }

  /** Equal values of this parameter (queue rules compared as rule lists, not as text). */
  function sameValue(param, a, b) {
    a = str(a);
    b = str(b);
    if (a === b) {
      return true;
    }
    if (param && param.type === 'queue_rules') {
      var ra = queueRulesFromJson(a);
      var rb = queueRulesFromJson(b);
      return !ra.error && !rb.error && queueRulesToJson(ra.rows) === queueRulesToJson(rb.rows);
    }
    return false;
  }

  /** The schema's features, each with an id (anything else is dropped). */
  function schemaFeatures(schema) {
    var list = schema && Array.isArray(schema.features) ? schema.features : [];
    return list.filter(function (f) {
      return isObject(f) && typeof f.id === 'string' && f.id !== '';
    });
  }

  function featureParams(feature) {
    var list = feature && Array.isArray(feature.params) ? feature.params : [];
    return list.filter(function (p) {
      return isObject(p) && typeof p.name === 'string' && p.name !== '';
    });
  }

  /** Why this PBX cannot run the feature, or null. Takes the schema's string, or feature.json's {pbx: reason}. */
  function unsupportedReason(feature, pbx) {
    var u = feature ? feature.unsupported : null;
    if (typeof u === 'string') {
      return u === '' ? null : u;
    }
    if (isObject(u)) {
      var r = get(u, pbx);
      return typeof r === 'string' && r !== '' ? r : null;
    }
    return null;
  }

  /**
   * What the page shows as installed after asking for the status:
   * {status, unknown, busy}. A status the PBX answered is shown. While a
   * change runs the PBX answers 409 at once (featpkg holds its lock): the
   * page keeps what it showed before, or, on a first load, says the state is
   * unknown rather than "not installed"; the change's end reloads it.
   */
  function statusAfterLoad(previous, result) {
    if (result && result.ok && isObject(result.value)) {
      return { status: result.value, unknown: false, busy: false };
    }
    var busy = !!(result && result.error && result.error.status === 409);
    if (busy && isObject(previous)) {
      return { status: previous, unknown: false, busy: true };
    }
    return { status: { installed: [], drift: [] }, unknown: true, busy: busy };
  }

  /** Installed features by id: {id: {bundle, version, params, user_params}} (first bundle wins; `prefer` first). */
  function installedFeatures(status, prefer) {
    var out = {};
    var bundles = status && Array.isArray(status.installed) ? status.installed.slice() : [];
    bundles = bundles.filter(isObject);
    if (prefer) {
      bundles.sort(function (a, b) {
        return (b.name === prefer ? 1 : 0) - (a.name === prefer ? 1 : 0);
      });
    }
    bundles.forEach(function (b) {
      (Array.isArray(b.features) ? b.features : []).forEach(function (f) {
        if (!isObject(f) || typeof f.id !== 'string' || own(out, f.id)) {
          return;
        }
        put(out, f.id, {
          bundle: str(b.name),
          version: str(f.version),
          params: isObject(f.params) ? f.params : {},
          user_params: isObject(f.user_params) ? f.user_params : {}
        });
      });
    });
    return out;
  }

  /** "featpkg-recipes:call-waiting/dialplan" -> {bundle, feature, edit}. */
  function parseDriftEdit(edit) {
    var s = str(edit);
    var bundle = '';
    var colon = s.indexOf(':');
    if (colon >= 0) {
      bundle = s.slice(0, colon);
      s = s.slice(colon + 1);
    }
    var slash = s.indexOf('/');
    return {
      bundle: bundle,
      feature: slash >= 0 ? s.slice(0, slash) : s,
      edit: slash >= 0 ? s.slice(slash + 1) : ''
    };
  }

  /** Drift entries split by feature id: {byFeature: {id: [entry]}, other: [entry]}. */
  function driftByFeature(status, schema) {
    var ids = {};
    schemaFeatures(schema).forEach(function (f) {
      put(ids, f.id, true);
    });
    var bundleName = schema && isObject(schema.bundle) ? str(schema.bundle.name) : '';
    var byFeature = {};
    var other = [];
    (status && Array.isArray(status.drift) ? status.drift : []).forEach(function (d) {
      if (!isObject(d)) {
        return;
      }
      var where = parseDriftEdit(d.edit);
      var bundle = str(d.bundle) || where.bundle;
      if (own(ids, where.feature) && (!bundleName || !bundle || bundle === bundleName)) {
        if (!own(byFeature, where.feature)) {
          put(byFeature, where.feature, []);
        }
        byFeature[where.feature].push(d);
      } else {
        other.push(d);
      }
    });
    return { byFeature: byFeature, other: other };
  }

  /**
   * The values a feature's form starts from: the page's saved parameters
   * (schema.saved_params), else the installed feature's user_params (set from
   * the command line, say). Only values someone set; a parameter missing here
   * is at its default.
   */
  function savedValues(schema, status, featureId) {
    var out = {};
    var inst = get(installedFeatures(status, schema && schema.bundle && schema.bundle.name), featureId);
    var user = inst ? inst.user_params : {};
    var saved = get(schema && schema.saved_params, featureId);
    [user, saved].forEach(function (src) {
      if (!isObject(src)) {
        return;
      }
      Object.keys(src).forEach(function (k) {
        if (src[k] !== null && src[k] !== undefined) {
          put(out, k, scalar(src[k]));
        }
      });
    });
    return out;
  }

  /** The raw text a control starts with: the saved value, else "" (default), else for a select its default. */
  function initialRaw(param, saved) {
    var v = get(saved, param.name);
    if (v !== undefined) {
      return str(v);
    }
    if (param.type === 'enum') {
      return str(param.default);
    }
    return '';
  }

  /**
   * The form as the schema and status describe it:
   * {"<feature>": {install, installed, values: {"<param>": raw}, saved: {...}}}.
   */
  function initialFormState(schema, status) {
    var inst = installedFeatures(status, schema && schema.bundle && schema.bundle.name);
    var pbx = schema ? schema.pbx : '';
    var out = {};
    schemaFeatures(schema).forEach(function (f) {
      var saved = savedValues(schema, status, f.id);
      var values = {};
      featureParams(f).forEach(function (p) {
        put(values, p.name, initialRaw(p, saved));
      });
      put(out, f.id, {
        install: own(inst, f.id) && !unsupportedReason(f, pbx),
        installed: own(inst, f.id),
        values: values,
        saved: saved
      });
    });
    return out;
  }

  /**
   * The `params` field of preview/apply: {"<feature>": {"<param>": "<value>"}}
   * for the selected (supported) features only; a parameter is sent when its
   * value is not the default, or when it was set before (so a value the admin
   * puts back to the default is sent, and replaces the old one). formState is
   * initialFormState's shape; a value left out of `values` keeps its saved one.
   */
  function collectParams(schema, formState) {
    var out = {};
    var pbx = schema ? schema.pbx : '';
    schemaFeatures(schema).forEach(function (f) {
      var fs = get(formState, f.id);
      if (!isObject(fs) || fs.install !== true || unsupportedReason(f, pbx)) {
        return;
      }
      var values = isObject(fs.values) ? fs.values : {};
      var saved = isObject(fs.saved) ? fs.saved : (get(schema && schema.saved_params, f.id) || {});
      var mine = {};
      var any = false;
      featureParams(f).forEach(function (p) {
        var raw = get(values, p.name);
        var prev = get(saved, p.name);
        var eff;
        if (raw === undefined || raw === null) {
          if (prev === undefined || prev === null) {
            return;
          }
          eff = str(prev);
        } else {
          eff = effectiveValue(p, raw);
        }
        if ((prev !== undefined && prev !== null) || !sameValue(p, eff, str(p.default))) {
          put(mine, p.name, eff);
          any = true;
        }
      });
      if (any) {
        put(out, f.id, mine);
      }
    });
    return out;
  }

  /** The `features` field: ids of the selected, supported features, in schema order. */
  function selectedFeatures(schema, formState) {
    var pbx = schema ? schema.pbx : '';
    return schemaFeatures(schema).filter(function (f) {
      var fs = get(formState, f.id);
      return isObject(fs) && fs.install === true && !unsupportedReason(f, pbx);
    }).map(function (f) {
      return f.id;
    });
  }

  /**
   * A hint about a control's text ({key, vars} for t(), or null). Never
   * blocking: featpkg checks every value. opts: {statuses (queue), badInput
   * (a number field holding no number), selected (the feature is selected)}.
   */
  function paramHint(param, raw, opts) {
    opts = opts || {};
    var type = str(param && param.type);
    var v = normalizeRaw(param, raw);
    if (type === 'integer' && opts.badInput) {
      return { key: 'hint_bad_number' };
    }
    if (v === '') {
      var noDefault = str(param.default) === '' && !param.default_from;
      if (param.required === true && noDefault && opts.selected !== false) {
        return { key: 'hint_required' };
      }
      return null;
    }
    if (type === 'integer') {
      if (!/^[-+]?[0-9]+$/.test(v)) {
        return { key: 'hint_integer' };
      }
      var n = Number(v);
      if ((isInt(param.min) && n < param.min) || (isInt(param.max) && n > param.max)) {
        return { key: 'hint_range', vars: { min: param.min, max: param.max } };
      }
      return null;
    }
    if (type === 'enum') {
      var values = Array.isArray(param.values) ? param.values.map(str) : [];
      return values.length && values.indexOf(v) < 0 ? { key: 'hint_enum', vars: { values: values.join(', ') } } : null;
    }
    if (type === 'digit_pattern') {
      return digitPatternOk(v) ? null : { key: 'hint_digit_pattern' };
    }
    if (type === 'context') {
      return contextOk(v) ? null : { key: 'hint_context' };
    }
    if (type === 'sound') {
      return TEXT_TYPES.sound.re.test(v) ? null : { key: 'hint_sound' };
    }
    if (type === 'endpoint_list') {
      var bad = v.split(',').some(function (item) {
        return !/^[A-Za-z0-9_.-]{1,64}$/.test(item);
      });
      return bad ? { key: 'hint_endpoint_list' } : null;
    }
    if (type === 'destination') {
      return destinationOk(v) ? null : { key: 'hint_destination' };
    }
    if (type === 'queue_rules') {
      var parsed = queueRulesFromJson(v);
      if (parsed.error) {
        return { key: 'hint_rules_json' };
      }
      var statuses = Array.isArray(opts.statuses) ? opts.statuses : null;
      var seen = {};
      for (var i = 0; i < parsed.rows.length; i++) {
        var r = parsed.rows[i];
        var row = i + 1;
        if (!/^[0-9]{1,20}$/.test(r.queue)) {
          return { key: 'hint_rule_queue', vars: { row: row }, row: i, field: 'queue' };
        }
        if (r.status === '' || (statuses && statuses.indexOf(r.status) < 0)) {
          return { key: 'hint_rule_status', vars: { row: row }, row: i, field: 'status' };
        }
        if (r.destination === '' || !destinationOk(r.destination)) {
          return { key: 'hint_rule_destination', vars: { row: row }, row: i, field: 'destination' };
        }
        var k = r.queue + '\u0000' + r.status;
        if (own(seen, k)) {
          return { key: 'hint_rule_duplicate', vars: { row: row, queue: r.queue, status: r.status }, row: i, field: null };
        }
        put(seen, k, true);
      }
      return null;
    }
    if (own(TEXT_TYPES, type) && TEXT_TYPES[type].re) {
      return TEXT_TYPES[type].re.test(v) ? null : { key: TEXT_TYPES[type].hint };
    }
    return null;
  }

  // ---- featpkg results -------------------------------------------------------------

  /**
   * Where a featpkg error belongs: {feature, param, row, field}, each null
   * when unknown. From error.path ("$.queue-failover.rules[1].status",
   * "$.conference-guest.number"), error.feature and error.param; rows count
   * from 0 as in the path.
   */
  function errorTarget(error) {
    var out = { feature: null, param: null, row: null, field: null };
    if (!isObject(error)) {
      return out;
    }
    var path = typeof error.path === 'string' ? error.path : '';
    var m = /^\$\.([^.[\]]+)(?:\.([^.[\]]+))?(?:\[(\d+)\])?(?:\.([^.[\]]+))?/.exec(path);
    if (m) {
      out.feature = m[1];
      out.param = m[2] || null;
      if (out.param && m[3] !== undefined) {
        out.row = Number(m[3]);
        out.field = m[4] || null;
      }
    }
    if (typeof error.feature === 'string' && error.feature !== '') {
      if (out.feature !== error.feature) {
        out.param = null;
        out.row = null;
        out.field = null;
      }
      out.feature = error.feature;
    }
    if (typeof error.param === 'string' && error.param !== '') {
      if (out.param !== error.param) {
        out.row = null;
        out.field = null;
      }
      out.param = error.param;
    }
    return out;
  }

  /** featpkg's {"error": {...}} inside a result, normalised ({message} at least), or null. */
  function resultError(result) {
    if (!isObject(result) || result.error === undefined || result.error === null) {
      return null;
    }
    var e = result.error;
    if (typeof e === 'string') {
      return { feature: null, param: null, path: null, message: e };
    }
    if (!isObject(e)) {
      return { feature: null, param: null, path: null, message: str(e) };
    }
    return {
      feature: typeof e.feature === 'string' ? e.feature : null,
      param: typeof e.param === 'string' ? e.param : null,
      path: typeof e.path === 'string' ? e.path : null,
      message: str(e.message)
    };
  }

  /** Class of one unified-diff line: "file", "hunk", "add", "del", "note" or "ctx". */
  function diffLineClass(line) {
    var s = str(line);
    if (s.indexOf('+++') === 0 || s.indexOf('---') === 0) {
      return 'file';
    }
    if (s.indexOf('@@') === 0) {
      return 'hunk';
    }
    if (s.charAt(0) === '+') {
      return 'add';
    }
    if (s.charAt(0) === '-') {
      return 'del';
    }
    if (s.charAt(0) === '\\') {
      return 'note';
    }
    return 'ctx';
  }

  /** Diff text -> [{text, kind}] (no trailing empty line). */
  function diffLines(text) {
    var lines = str(text).replace(/\r\n/g, '\n').split('\n');
    if (lines.length && lines[lines.length - 1] === '') {
      lines.pop();
    }
    return lines.map(function (l) {
      return { text: l, kind: diffLineClass(l) };
    });
  }

  /**
   * Each step's mark for a job: [{step, mark}], mark one of "done", "active",
   * "failed", "pending" (running, not yet), "skipped" (done without it),
   * "unreached" (failed before it).
   */
  function stepStates(reached, state) {
    var got = (Array.isArray(reached) ? reached : []).filter(function (s) {
      return STEPS.indexOf(s) >= 0;
    });
    var last = got.length ? got[got.length - 1] : null;
    return STEPS.map(function (step) {
      var mark;
      if (got.indexOf(step) < 0) {
        mark = state === 'running' ? 'pending' : (state === 'failed' ? 'unreached' : 'skipped');
      } else if (step === last) {
        mark = state === 'running' ? 'active' : (state === 'failed' ? 'failed' : 'done');
      } else {
        mark = 'done';
      }
      return { step: step, mark: mark };
    });
  }

  // ---- the page (DOM) ----------------------------------------------------------------

  var idCounter = 0;

  function nextId() {
    idCounter += 1;
    return 'fp-el-' + idCounter;
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      setTimeout(resolve, ms);
    });
  }

  function clear(node) {
    while (node && node.firstChild) {
      node.removeChild(node.firstChild);
    }
  }

  /**
   * Builds an element. attrs: "class", "text" (textContent), "hidden",
   * "disabled", "checked", "value", "type" as properties; others with
   * setAttribute (names are ours; values may be server text).
   */
  function h(doc, tag, attrs, children) {
    var node = doc.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) {
          return;
        }
        if (k === 'class') {
          node.className = v;
        } else if (k === 'text') {
          node.textContent = str(v);
        } else if (k === 'hidden' || k === 'disabled' || k === 'checked') {
          node[k] = true;
        } else if (k === 'value') {
          node.value = str(v);
        } else if (k === 'type') {
          node.setAttribute('type', v);
        } else {
          node.setAttribute(k, v === true ? '' : str(v));
        }
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) {
        return;
      }
      node.appendChild(typeof c === 'string' ? doc.createTextNode(c) : c);
    });
    return node;
  }

  function scrollTo(node) {
    if (node && typeof node.scrollIntoView === 'function') {
      try {
        node.scrollIntoView({ block: 'center', behavior: 'smooth' });
      } catch (e) {
        node.scrollIntoView();
      }
    }
  }

  /** The settings page on one root element. env: {window, fetch}. */
  function Page(root, env) {
    this.root = root;
    this.doc = root.ownerDocument;
    this.win = (env && env.window) || {};
    this.fetch = (env && env.fetch) || null;
    this.pbx = detectPbx(root.getAttribute('data-pbx'), this.win);
    this.attrLang = root.getAttribute('data-lang') || '';
    this.lang = pickLanguage(this.attrLang, '', this.win.globalWebAdminLanguage,
      this.doc.documentElement ? this.doc.documentElement.lang : '');
    this.schema = null;
    this.status = null;
    this.cards = [];
    this.buttons = [];
    this.busy = false;
    this.allowRestart = null;
    this.preview = null;
    this.slots = {};
  }

  Page.prototype.t = function (key, vars) {
    return t(this.lang, key, vars);
  };

  Page.prototype.el = function (tag, attrs, children) {
    return h(this.doc, tag, attrs, children);
  };

  /** A region of the skeleton ([data-fp=name]), created at the end of the root if the HTML lacks it. */
  Page.prototype.slot = function (name, tag, cls) {
    if (this.slots[name]) {
      return this.slots[name];
    }
    var node = null;
    var all = this.root.querySelectorAll('[data-fp]');
    for (var i = 0; i < all.length; i++) {
      if (all[i].getAttribute('data-fp') === name) {
        node = all[i];
        break;
      }
    }
    if (!node) {
      node = this.el(tag || 'div', { class: cls || ('fp-' + name), 'data-fp': name });
      this.root.appendChild(node);
    }
    this.slots[name] = node;
    return node;
  };

  Page.prototype.call = function (action, fields) {
    return callAction(this.pbx, action, fields, { window: this.win, fetch: this.fetch, lang: this.lang });
  };

  Page.prototype.start = async function () {
    this.root.classList.add('fp-ready');
    var loading = this.slot('loading');
    loading.textContent = this.t('loading');
    loading.hidden = false;
    if (!this.pbx) {
      loading.hidden = true;
      this.showPageError(this.t('no_pbx'));
      return;
    }
    try {
      await this.load({ initial: true });
    } catch (e) {
      loading.hidden = true;
      this.showPageError(this.t('load_failed', { message: (e && e.message) || String(e) }));
    }
  };

  /** Error text, with a hint for a 401/403. */
  Page.prototype.errorText = function (e) {
    var msg = (e && e.message) || String(e);
    if (e && e.status === 401) {
      msg += '\n' + this.t('hint_401');
    } else if (e && e.status === 403) {
      msg += '\n' + this.t('hint_403');
    }
    return msg;
  };

  Page.prototype.showPageError = function (message, retry) {
    var box = this.slot('page-error');
    clear(box);
    box.className = 'fp-alert fp-alert-error';
    box.setAttribute('role', 'alert');
    box.appendChild(this.el('div', { class: 'fp-message', text: message }));
    if (retry) {
      var self = this;
      var b = this.el('button', { type: 'button', class: 'fp-btn', text: this.t('retry') });
      b.addEventListener('click', function () {
        self.hidePageError();
        self.slot('loading').hidden = false;
        self.load({ initial: true }).catch(function (e) {
          self.showPageError(self.t('load_failed', { message: self.errorText(e) }), true);
        });
      });
      box.appendChild(b);
    }
    box.hidden = false;
  };

  Page.prototype.hidePageError = function () {
    var box = this.slot('page-error');
    clear(box);
    box.hidden = true;
  };

  /**
   * Reads schema and status and draws the page. opts: {initial: resume a
   * running job; keep: {feature: {install, values}} edits to put back}.
   */
  Page.prototype.load = async function (opts) {
    opts = opts || {};
    var self = this;
    var results = await Promise.all([
      this.call('schema').then(function (v) {
        return { ok: true, value: v };
      }, function (e) {
        return { ok: false, error: e };
      }),
      this.call('status').then(function (v) {
        return { ok: true, value: v };
      }, function (e) {
        return { ok: false, error: e };
      })
    ]);
    this.slot('loading').hidden = true;
    if (!results[0].ok || !isObject(results[0].value)) {
      var msg = results[0].ok ? this.t('err_http', { status: 200 }) : this.errorText(results[0].error);
      this.showPageError(this.t('load_failed', { message: msg }), true);
      return false;
    }
    this.hidePageError();
    var schema = results[0].value;
    if (schema.pbx !== 'mikopbx' && schema.pbx !== 'freepbx') {
      schema.pbx = this.pbx;
    }
    this.schema = schema;
    this.lang = pickLanguage(this.attrLang, schema.lang, this.win.globalWebAdminLanguage,
      this.doc.documentElement ? this.doc.documentElement.lang : '');
    var shown = statusAfterLoad(this.status, results[1]);
    this.status = shown.status;
    this.statusUnknown = shown.unknown;
    this.render();
    if (opts.keep) {
      this.restoreEdits(opts.keep);
    }
    if (shown.busy) {
      this.showPageError(this.t('status_busy'));
    } else if (!results[1].ok) {
      this.showPageError(this.t('status_failed', { message: this.errorText(results[1].error) }));
    }
    if (opts.initial && typeof schema.job === 'string' && schema.job !== '') {
      self.resumeJob(schema.job);
    }
    return true;
  };

  // ---- drawing ----

  Page.prototype.render = function () {
    var schema = this.schema;
    this.root.setAttribute('lang', this.lang);
    this.buttons = [];
    this.renderHead();
    var inst = installedFeatures(this.status, schema.bundle && schema.bundle.name);
    var drift = driftByFeature(this.status, schema);
    var form = initialFormState(schema, this.status);
    var list = this.slot('features');
    clear(list);
    this.cards = [];
    var features = schemaFeatures(schema);
    if (!features.length) {
      list.appendChild(this.el('p', { class: 'fp-empty', text: this.t('features_none') }));
    }
    var self = this;
    features.forEach(function (f) {
      var card = self.renderCard(f, get(inst, f.id) || null, get(drift.byFeature, f.id) || [], get(form, f.id));
      self.cards.push(card);
      list.appendChild(card.node);
    });
    this.renderOtherDrift(drift.other);
    this.renderToolbar();
    this.setBusy(this.busy);
  };

  Page.prototype.renderHead = function () {
    var head = this.slot('head', 'div', 'fp-head');
    clear(head);
    var b = isObject(this.schema.bundle) ? this.schema.bundle : {};
    var title = this.el('h2', { class: 'fp-title' }, [
      this.el('span', { class: 'fp-title-name', text: str(b.name) || this.t('title_fallback') }),
      b.version ? this.el('span', { class: 'fp-title-version', text: this.t('bundle_version', { version: b.version }) }) : null
    ]);
    var self = this;
    var refresh = this.el('button', { type: 'button', class: 'fp-btn fp-btn-small', text: this.t('refresh') });
    refresh.addEventListener('click', function () {
      self.refresh();
    });
    this.buttons.push(refresh);
    head.appendChild(this.el('div', { class: 'fp-head-row' }, [title, refresh]));
    if (b.description) {
      head.appendChild(this.el('p', { class: 'fp-description', text: str(b.description) }));
    }
  };

  Page.prototype.renderDriftList = function (entries) {
    var self = this;
    var ul = this.el('ul', { class: 'fp-drift-list' });
    entries.forEach(function (d) {
      var kind = str(d.kind);
      var label = own(STRINGS.en, 'drift_kind_' + kind) ? self.t('drift_kind_' + kind) : kind;
      ul.appendChild(self.el('li', { class: 'fp-drift-item' }, [
        self.el('span', { class: 'fp-drift-kind', title: kind, text: label }),
        ' ',
        self.el('code', { class: 'fp-path', text: str(d.path) }),
        d.edit ? self.el('span', { class: 'fp-drift-edit', text: ' (' + str(d.edit) + ')' }) : null,
        d.detail ? self.el('div', { class: 'fp-drift-detail', text: str(d.detail) }) : null
      ]));
    });
    return ul;
  };

  Page.prototype.renderOtherDrift = function (entries) {
    var box = this.slot('drift');
    clear(box);
    box.hidden = !entries.length;
    if (entries.length) {
      box.className = 'fp-alert fp-alert-warning';
      box.appendChild(this.el('div', { class: 'fp-alert-title', text: this.t('drift_other_title') }));
      box.appendChild(this.renderDriftList(entries));
    }
  };

  /** One feature's card; returns its model. */
  Page.prototype.renderCard = function (feature, inst, drifts, fs) {
    var self = this;
    var reason = unsupportedReason(feature, this.schema.pbx);
    var card = {
      id: feature.id,
      feature: feature,
      installed: inst,
      unsupported: reason,
      saved: fs ? fs.saved : {},
      initialInstall: !!(fs && fs.install),
      fields: [],
      checkbox: null,
      details: null
    };
    var node = this.el('section', {
      class: 'fp-card' + (reason ? ' fp-card-unsupported' : '') + (inst ? ' fp-card-installed' : ''),
      'data-feature': feature.id
    });
    card.node = node;

    var titleId = nextId();
    var head = this.el('div', { class: 'fp-card-head' });
    head.appendChild(this.el('h3', { class: 'fp-card-title', id: titleId, text: feature.id }));
    var badges = this.el('span', { class: 'fp-badges' });
    if (inst) {
      badges.appendChild(this.el('span', { class: 'fp-badge fp-badge-installed', text: this.t('installed', { version: inst.version }) }));
      if (feature.version && inst.version && str(feature.version) !== inst.version) {
        badges.appendChild(this.el('span', { class: 'fp-badge fp-badge-upgrade', text: this.t('upgrade', { from: inst.version, to: str(feature.version) }) }));
      }
    } else {
      badges.appendChild(this.el('span', { class: 'fp-badge', text: this.t(this.statusUnknown ? 'status_unknown' : 'not_installed') }));
    }
    if (drifts.length) {
      badges.appendChild(this.el('span', { class: 'fp-badge fp-badge-drift', text: this.t('drift_title') }));
    }
    head.appendChild(badges);
    node.appendChild(head);
    node.setAttribute('aria-labelledby', titleId);

    if (feature.summary) {
      node.appendChild(this.el('p', { class: 'fp-summary', text: str(feature.summary) }));
    }
    if (reason) {
      node.appendChild(this.el('p', { class: 'fp-unsupported-reason', text: this.t('unsupported', { reason: reason }) }));
    }

    card.error = this.el('div', { class: 'fp-alert fp-alert-error fp-card-error', role: 'alert', hidden: true });
    node.appendChild(card.error);

    if (drifts.length) {
      var driftBox = this.el('div', { class: 'fp-alert fp-alert-warning fp-drift' }, [
        this.el('div', { class: 'fp-alert-title', text: this.t('drift_title') }),
        this.renderDriftList(drifts)
      ]);
      node.appendChild(driftBox);
    }

    if (!reason) {
      var boxId = nextId();
      card.checkbox = this.el('input', { type: 'checkbox', id: boxId, class: 'fp-checkbox' });
      card.checkbox.checked = card.initialInstall;
      var check = this.el('div', { class: 'fp-check fp-install' }, [
        card.checkbox,
        this.el('label', { for: boxId, text: inst ? this.t('keep_label') : this.t('install_label') })
      ]);
      node.appendChild(check);
      card.note = this.el('p', { class: 'fp-note', text: this.t('unchecked_installed_note'), hidden: true });
      node.appendChild(card.note);

      var params = featureParams(feature);
      var details = this.el('details', { class: 'fp-params' });
      card.details = details;
      card.countNode = this.el('span', { class: 'fp-params-count' });
      details.appendChild(this.el('summary', { class: 'fp-params-summary' }, [
        this.el('span', { class: 'fp-params-title', text: this.t('params_title') }),
        ' ',
        card.countNode
      ]));
      var fieldsBox = this.el('div', { class: 'fp-fields' });
      if (!params.length) {
        fieldsBox.appendChild(this.el('p', { class: 'fp-empty', text: this.t('no_params') }));
      }
      params.forEach(function (p) {
        var field = self.renderField(card, p, fs ? get(fs.values, p.name) : '', get(card.saved, p.name));
        card.fields.push(field);
        fieldsBox.appendChild(field.node);
      });
      details.appendChild(fieldsBox);
      node.appendChild(details);
      if (card.initialInstall) {
        details.open = true;
      }
      card.checkbox.addEventListener('change', function () {
        if (card.checkbox.checked) {
          details.open = true;
        }
        self.updateCard(card);
        self.edited();
      });
    }

    if (inst) {
      node.appendChild(this.renderConfirmAction({
        label: this.t('remove'),
        question: this.t('remove_confirm', { feature: feature.id }),
        yes: this.t('remove_yes'),
        danger: true,
        run: function () {
          self.runJob('remove', { feature: feature.id }, feature.id);
        }
      }, 'fp-card-actions'));
    }
    this.updateCard(card);
    return card;
  };

  /** A button that asks inline before it runs (no window.confirm: it works the same everywhere). */
  Page.prototype.renderConfirmAction = function (o, cls) {
    var self = this;
    var box = this.el('div', { class: cls || 'fp-confirm-action' });
    var button = this.el('button', { type: 'button', class: 'fp-btn' + (o.danger ? ' fp-btn-danger' : ''), text: o.label });
    var ask = this.el('div', { class: 'fp-confirm', role: 'group', hidden: true });
    var yes = this.el('button', { type: 'button', class: 'fp-btn fp-btn-danger', text: o.yes });
    var no = this.el('button', { type: 'button', class: 'fp-btn', text: this.t('cancel') });
    ask.appendChild(this.el('span', { class: 'fp-confirm-text', text: o.question }));
    ask.appendChild(yes);
    ask.appendChild(no);
    button.addEventListener('click', function () {
      button.hidden = true;
      ask.hidden = false;
      yes.focus();
    });
    no.addEventListener('click', function () {
      ask.hidden = true;
      button.hidden = false;
      button.focus();
    });
    yes.addEventListener('click', function () {
      ask.hidden = true;
      button.hidden = false;
      if (!self.busy) {
        o.run();
      }
    });
    this.buttons.push(button, yes);
    box.appendChild(button);
    box.appendChild(ask);
    return box;
  };

  Page.prototype.updateCard = function (card) {
    var selected = card.checkbox ? card.checkbox.checked : false;
    card.node.classList.toggle('fp-card-selected', selected);
    if (card.note) {
      card.note.hidden = !(card.installed && !selected);
    }
    var set = 0;
    card.fields.forEach(function (f) {
      f.update();
      if (f.isSet) {
        set += 1;
      }
    });
    if (card.countNode) {
      card.countNode.textContent = card.fields.length ? '(' + this.t('params_count', { count: card.fields.length, set: set }) + ')' : '';
    }
  };

  /** One parameter: label, marks, control, help, default, hint, featpkg error. Returns its model. */
  Page.prototype.renderField = function (card, param, raw, saved) {
    var self = this;
    var spec = paramControlSpec(param, this.lang);
    var id = nextId();
    var field = {
      param: param,
      spec: spec,
      card: card,
      saved: saved,
      initialRaw: str(raw),
      isSet: false,
      read: null,
      write: null,
      focus: null,
      badInput: function () {
        return false;
      }
    };
    var node = this.el('div', { class: 'fp-field fp-type-' + spec.control, 'data-param': param.name });
    field.node = node;
    field.setMark = this.el('span', { class: 'fp-mark fp-mark-set', title: this.t('set_mark_title'), text: this.t('set_mark'), hidden: true });
    field.changedMark = this.el('span', { class: 'fp-mark fp-mark-changed', title: this.t('changed_mark_title'), text: this.t('changed_mark'), hidden: true });
    var labelId = nextId();
    var label = this.el('label', { class: 'fp-label', id: labelId, for: spec.control === 'queue_rules' ? null : id }, [
      this.el('span', { class: 'fp-param-name', text: param.name }),
      spec.required ? this.el('span', { class: 'fp-required', title: this.t('required_mark_title'), 'aria-label': this.t('required_mark_title'), text: '*' }) : null,
      field.setMark,
      field.changedMark
    ]);
    node.appendChild(label);
    var helpId = nextId();
    var control;
    if (spec.control === 'select') {
      control = this.renderSelect(field, id, helpId);
    } else if (spec.control === 'destination') {
      control = this.renderDestination(field, id, helpId);
    } else if (spec.control === 'queue_rules') {
      control = this.renderQueueRules(field, id, helpId, labelId);
    } else {
      control = this.renderInput(field, id, helpId);
    }
    node.appendChild(control);
    if (param.help) {
      node.appendChild(this.el('p', { class: 'fp-help', id: helpId, text: str(param.help) }));
    }
    var defaultText = spec.defaultLabel;
    if (spec.control === 'number' && spec.min !== null && spec.max !== null) {
      defaultText += ' · ' + this.t('range', { min: spec.min, max: spec.max });
    }
    node.appendChild(this.el('p', { class: 'fp-default', text: defaultText }));
    field.hint = this.el('p', { class: 'fp-hint', hidden: true });
    field.error = this.el('div', { class: 'fp-field-error', role: 'alert', hidden: true });
    node.appendChild(field.hint);
    node.appendChild(field.error);

    field.update = function () {
      var rawNow = field.read();
      var eff = effectiveValue(param, rawNow);
      var def = str(param.default);
      field.isSet = saved !== undefined || !sameValue(param, eff, def);
      field.setMark.hidden = !field.isSet;
      field.changedMark.hidden = sameValue(param, eff, effectiveValue(param, field.initialRaw));
      var hint = paramHint(param, rawNow, {
        statuses: self.schema.queue_statuses,
        badInput: field.badInput(),
        selected: card.checkbox ? card.checkbox.checked : false
      });
      field.hint.hidden = !hint;
      field.hint.textContent = hint ? self.t(hint.key, hint.vars) : '';
    };
    field.onEdit = function () {
      field.update();
      self.updateCard(card);
      self.edited();
    };
    return field;
  };

  Page.prototype.renderInput = function (field, id, helpId) {
    var spec = field.spec;
    var input = this.el('input', {
      type: spec.inputType,
      id: id,
      class: 'fp-input' + (spec.control === 'number' ? ' fp-input-number' : ''),
      placeholder: spec.placeholder || null,
      maxlength: spec.maxLength,
      inputmode: spec.inputMode,
      min: spec.min,
      max: spec.max,
      step: spec.step,
      autocomplete: 'off',
      spellcheck: 'false',
      'aria-describedby': helpId
    });
    if (spec.required) {
      input.setAttribute('aria-required', 'true');
    }
    input.value = field.initialRaw;
    field.read = function () {
      return input.value;
    };
    field.write = function (v) {
      input.value = str(v);
    };
    field.focus = input;
    field.badInput = function () {
      return !!(input.validity && input.validity.badInput);
    };
    input.addEventListener('input', function () {
      field.onEdit();
    });
    return input;
  };

  Page.prototype.renderSelect = function (field, id, helpId) {
    var self = this;
    var spec = field.spec;
    var select = this.el('select', { id: id, class: 'fp-select', 'aria-describedby': helpId });
    var values = spec.options.map(function (o) {
      return o.value;
    });
    spec.options.forEach(function (o) {
      select.appendChild(self.el('option', { value: o.value, text: o.label }));
    });
    function ensure(v) {
      if (values.indexOf(v) < 0) {
        // A saved value the schema no longer lists: shown, not silently replaced.
        select.appendChild(self.el('option', { value: v, text: self.t('option_unknown', { value: v }) }));
        values.push(v);
      }
    }
    var initial = field.initialRaw === '' ? spec.defaultValue : field.initialRaw;
    if (initial === '' && values.length) {
      initial = values[0];
    }
    ensure(initial);
    select.value = initial;
    field.read = function () {
      return select.value;
    };
    field.write = function (v) {
      v = str(v) === '' ? spec.defaultValue : str(v);
      ensure(v);
      select.value = v;
    };
    field.focus = select;
    select.addEventListener('change', function () {
      field.onEdit();
    });
    return select;
  };

  /** Three small inputs (context, exten, priority) -> "context,exten,priority" or "". */
  Page.prototype.renderDestination = function (field, id, helpId, rowValue, onChange) {
    var self = this;
    var spec = field ? field.spec : null;
    var start = field ? field.initialRaw : str(rowValue);
    var parts = splitDestination(start);
    var defParts = spec ? splitDestination(spec.defaultValue) : { context: '', exten: '', priority: '' };
    var box = this.el('div', { class: 'fp-destination', role: 'group' });
    var inputs = {};
    [['context', 'dest_context', 'fp-dest-context'], ['exten', 'dest_exten', 'fp-dest-exten'], ['priority', 'dest_priority', 'fp-dest-priority']].forEach(function (d, i) {
      var inputId = i === 0 && id ? id : nextId();
      var input = self.el('input', {
        type: 'text',
        id: inputId,
        class: 'fp-input ' + d[2],
        placeholder: defParts[d[0]] || self.t(d[1]),
        'aria-label': self.t(d[1]),
        'aria-describedby': helpId || null,
        autocomplete: 'off',
        spellcheck: 'false',
        inputmode: d[0] === 'priority' ? 'numeric' : null
      });
      input.value = parts[d[0]];
      inputs[d[0]] = input;
      var wrap = self.el('span', { class: 'fp-dest-part' }, [
        input,
        self.el('span', { class: 'fp-dest-label', 'aria-hidden': 'true', text: self.t(d[1]) })
      ]);
      if (i > 0) {
        box.appendChild(self.el('span', { class: 'fp-dest-sep', 'aria-hidden': 'true', text: ',' }));
      }
      box.appendChild(wrap);
      input.addEventListener('input', function () {
        if (field) {
          field.onEdit();
        }
        if (onChange) {
          onChange();
        }
      });
    });
    var read = function () {
      return joinDestination({ context: inputs.context.value, exten: inputs.exten.value, priority: inputs.priority.value });
    };
    var write = function (v) {
      var p = splitDestination(v);
      inputs.context.value = p.context;
      inputs.exten.value = p.exten;
      inputs.priority.value = p.priority;
    };
    if (field) {
      field.read = read;
      field.write = write;
      field.focus = inputs.context;
      if (!spec.required) {
        box.appendChild(this.el('span', { class: 'fp-dest-none', text: this.t('dest_none_hint') }));
      }
    }
    box.fpRead = read;
    box.fpFocus = inputs.context;
    box.fpInputs = inputs;
    return box;
  };

  /** queue_rules: a table of rules (queue, status, destination) with add/remove, round-tripping to the JSON text. */
  Page.prototype.renderQueueRules = function (field, id, helpId, labelId) {
    var self = this;
    var statuses = Array.isArray(this.schema.queue_statuses) ? this.schema.queue_statuses.map(str) : [];
    var box = this.el('div', { class: 'fp-rules', id: id, tabindex: '-1', role: 'group', 'aria-labelledby': labelId, 'aria-describedby': helpId });
    var rows = [];
    var mode = { text: null };
    var table = this.el('table', { class: 'fp-rules-table' });
    var thead = this.el('thead', null, [this.el('tr', null, [
      this.el('th', { class: 'fp-rules-num', scope: 'col', text: '#' }),
      this.el('th', { scope: 'col', text: this.t('rules_queue') }),
      this.el('th', { scope: 'col', text: this.t('rules_status') }),
      this.el('th', { scope: 'col', text: this.t('rules_destination') }),
      this.el('th', { scope: 'col' }, [this.el('span', { class: 'fp-sr-only', text: this.t('rules_remove') })])
    ])]);
    var tbody = this.el('tbody');
    table.appendChild(thead);
    table.appendChild(tbody);
    var empty = this.el('p', { class: 'fp-empty fp-rules-empty', text: this.t('rules_empty') });
    var add = this.el('button', { type: 'button', class: 'fp-btn fp-btn-small', text: this.t('rules_add') });
    var textBox = this.el('div', { class: 'fp-rules-text', hidden: true });

    function renumber() {
      rows.forEach(function (r, i) {
        r.num.textContent = String(i + 1);
        r.remove.setAttribute('aria-label', self.t('rules_remove') + ' ' + (i + 1));
        r.remove.title = self.t('rules_remove') + ' ' + (i + 1);
      });
      empty.hidden = rows.length > 0;
      table.hidden = rows.length === 0;
    }

    function addRow(rule, focus) {
      rule = rule || { queue: '', status: '', destination: '' };
      var r = {};
      r.num = self.el('td', { class: 'fp-rules-num' });
      r.queue = self.el('input', {
        type: 'text', class: 'fp-input fp-rule-queue', inputmode: 'numeric', maxlength: '20',
        autocomplete: 'off', 'aria-label': self.t('rules_queue')
      });
      r.queue.value = rule.queue;
      r.status = self.el('select', { class: 'fp-select fp-rule-status', 'aria-label': self.t('rules_status') });
      r.status.appendChild(self.el('option', { value: '', text: self.t('rules_choose_status') }));
      var known = statuses.slice();
      known.forEach(function (s) {
        r.status.appendChild(self.el('option', { value: s, text: s }));
      });
      if (rule.status !== '' && known.indexOf(rule.status) < 0) {
        r.status.appendChild(self.el('option', { value: rule.status, text: self.t('option_unknown', { value: rule.status }) }));
      }
      r.status.value = rule.status;
      r.dest = self.renderDestination(null, null, null, rule.destination, function () {
        field.onEdit();
      });
      r.remove = self.el('button', { type: 'button', class: 'fp-btn fp-btn-small fp-btn-icon', text: '×' });
      r.errs = {
        queue: self.el('div', { class: 'fp-cell-error', role: 'alert', hidden: true }),
        status: self.el('div', { class: 'fp-cell-error', role: 'alert', hidden: true }),
        destination: self.el('div', { class: 'fp-cell-error', role: 'alert', hidden: true })
      };
      r.rowErr = self.el('div', { class: 'fp-cell-error', role: 'alert', hidden: true });
      r.tr = self.el('tr', { class: 'fp-rule' }, [
        r.num,
        self.el('td', { class: 'fp-rules-queue' }, [r.queue, r.errs.queue]),
        self.el('td', { class: 'fp-rules-status' }, [r.status, r.errs.status]),
        self.el('td', { class: 'fp-rules-dest' }, [r.dest, r.errs.destination]),
        self.el('td', { class: 'fp-rules-actions' }, [r.remove])
      ]);
      r.errTr = self.el('tr', { class: 'fp-rule-error', hidden: true }, [
        self.el('td', { colspan: '5' }, [r.rowErr])
      ]);
      r.queue.addEventListener('input', function () {
        field.onEdit();
      });
      r.status.addEventListener('change', function () {
        field.onEdit();
      });
      r.remove.addEventListener('click', function () {
        var i = rows.indexOf(r);
        if (i >= 0) {
          rows.splice(i, 1);
        }
        tbody.removeChild(r.tr);
        tbody.removeChild(r.errTr);
        renumber();
        field.onEdit();
        (rows[i] || rows[i - 1] || { queue: add }).queue.focus();
      });
      rows.push(r);
      tbody.appendChild(r.tr);
      tbody.appendChild(r.errTr);
      renumber();
      if (focus) {
        r.queue.focus();
      }
    }

    function setRows(list) {
      rows.slice().forEach(function (r) {
        tbody.removeChild(r.tr);
        tbody.removeChild(r.errTr);
      });
      rows.length = 0;
      list.forEach(function (rule) {
        addRow(rule, false);
      });
      renumber();
    }

    function textMode(raw) {
      mode.text = self.el('textarea', { class: 'fp-textarea', rows: '4', spellcheck: 'false', 'aria-label': field.param.name });
      mode.text.value = raw;
      mode.text.addEventListener('input', function () {
        field.onEdit();
      });
      var reset = self.el('button', { type: 'button', class: 'fp-btn fp-btn-small', text: self.t('rules_reset') });
      reset.addEventListener('click', function () {
        clear(textBox);
        textBox.hidden = true;
        mode.text = null;
        table.parentNode.hidden = false;
        setRows([]);
        field.onEdit();
      });
      clear(textBox);
      textBox.appendChild(self.el('p', { class: 'fp-note', text: self.t('rules_invalid') }));
      textBox.appendChild(mode.text);
      textBox.appendChild(reset);
      textBox.hidden = false;
      tableBox.hidden = true;
    }

    var tableBox = this.el('div', { class: 'fp-rules-table-box' }, [table, empty, add]);
    box.appendChild(tableBox);
    box.appendChild(textBox);
    add.addEventListener('click', function () {
      addRow(null, true);
      field.onEdit();
    });

    function load(raw) {
      var parsed = queueRulesFromJson(raw === '' ? field.spec.defaultValue : raw);
      if (parsed.error) {
        textMode(raw);
      } else {
        if (mode.text) {
          clear(textBox);
          textBox.hidden = true;
          mode.text = null;
          tableBox.hidden = false;
        }
        setRows(parsed.rows);
      }
    }
    load(field.initialRaw);

    field.read = function () {
      if (mode.text) {
        return mode.text.value;
      }
      return queueRulesToJson(rows.map(function (r) {
        return { queue: r.queue.value, status: r.status.value, destination: r.dest.fpRead() };
      }));
    };
    field.write = load;
    field.focus = box;
    field.rowCells = function (row, which) {
      var r = rows[row];
      if (!r) {
        return null;
      }
      if (which === 'queue') {
        return { error: r.errs.queue, focus: r.queue, tr: r.errTr };
      }
      if (which === 'status') {
        return { error: r.errs.status, focus: r.status, tr: r.errTr };
      }
      if (which === 'destination') {
        return { error: r.errs.destination, focus: r.dest.fpFocus, tr: r.errTr };
      }
      return { error: r.rowErr, focus: r.queue, tr: r.errTr, row: true };
    };
    field.clearRowErrors = function () {
      rows.forEach(function (r) {
        [r.errs.queue, r.errs.status, r.errs.destination, r.rowErr].forEach(function (e) {
          e.textContent = '';
          e.hidden = true;
        });
        r.errTr.hidden = true;
        r.tr.classList.remove('fp-has-error');
      });
    };
    return box;
  };

  Page.prototype.renderToolbar = function () {
    var self = this;
    var bar = this.slot('toolbar');
    var keepRestart = this.allowRestart ? this.allowRestart.checked : this.schema.allow_restart === true;
    clear(bar);
    bar.hidden = false;
    this.allowRestart = null;
    if (this.pbx === 'mikopbx') {
      var rid = nextId();
      var hid = nextId();
      this.allowRestart = this.el('input', { type: 'checkbox', id: rid, class: 'fp-checkbox', 'aria-describedby': hid });
      this.allowRestart.checked = keepRestart;
      this.allowRestart.addEventListener('change', function () {
        self.edited();
      });
      bar.appendChild(this.el('div', { class: 'fp-check fp-allow-restart' }, [
        this.allowRestart,
        this.el('label', { for: rid, text: this.t('allow_restart') }),
        this.el('p', { class: 'fp-help', id: hid, text: this.t('allow_restart_help') })
      ]));
    }
    var preview = this.el('button', { type: 'button', class: 'fp-btn', text: this.t('preview') });
    var apply = this.el('button', { type: 'button', class: 'fp-btn fp-btn-primary', text: this.t('apply') });
    preview.addEventListener('click', function () {
      self.doPreview();
    });
    apply.addEventListener('click', function () {
      self.doApply();
    });
    this.buttons.push(preview, apply);
    var rollback = this.renderConfirmAction({
      label: this.t('rollback'),
      question: this.t('rollback_confirm'),
      yes: this.t('rollback_yes'),
      danger: false,
      run: function () {
        self.runJob('rollback', {}, null);
      }
    }, 'fp-rollback');
    bar.appendChild(this.el('div', { class: 'fp-buttons' }, [preview, apply, rollback]));
    bar.appendChild(this.el('p', { class: 'fp-help', text: this.t('toolbar_note') }));
  };

  Page.prototype.setBusy = function (busy) {
    this.busy = !!busy;
    this.buttons.forEach(function (b) {
      b.disabled = !!busy;
    });
    this.root.classList.toggle('fp-busy', !!busy);
    this.root.setAttribute('aria-busy', busy ? 'true' : 'false');
  };

  // ---- form state ----

  Page.prototype.formState = function () {
    var out = {};
    this.cards.forEach(function (card) {
      var values = {};
      card.fields.forEach(function (f) {
        put(values, f.param.name, f.read());
      });
      put(out, card.id, {
        install: card.checkbox ? card.checkbox.checked : false,
        installed: !!card.installed,
        values: values,
        saved: card.saved
      });
    });
    return out;
  };

  /** Edits to carry across a reload: the selection and every value that differs from how it was drawn. */
  Page.prototype.snapshotEdits = function (except) {
    var keep = {};
    this.cards.forEach(function (card) {
      if (card.id === except) {
        return;
      }
      var values = {};
      card.fields.forEach(function (f) {
        var raw = f.read();
        if (!sameValue(f.param, normalizeRaw(f.param, raw), normalizeRaw(f.param, f.initialRaw))) {
          put(values, f.param.name, raw);
        }
      });
      put(keep, card.id, { install: card.checkbox ? card.checkbox.checked : null, values: values });
    });
    return keep;
  };

  Page.prototype.restoreEdits = function (keep) {
    var self = this;
    this.cards.forEach(function (card) {
      var k = get(keep, card.id);
      if (!k) {
        return;
      }
      if (card.checkbox && typeof k.install === 'boolean') {
        card.checkbox.checked = k.install;
        if (k.install) {
          card.details.open = true;
        }
      }
      card.fields.forEach(function (f) {
        var v = get(k.values, f.param.name);
        if (v !== undefined) {
          f.write(v);
        }
      });
      self.updateCard(card);
    });
  };

  Page.prototype.requestFields = function () {
    var fs = this.formState();
    var ids = selectedFeatures(this.schema, fs);
    var fields = {
      params: collectParams(this.schema, fs),
      features: ids.join(',')
    };
    if (this.pbx === 'mikopbx' && this.allowRestart) {
      fields.allow_restart = this.allowRestart.checked ? '1' : '0';
    }
    return { fields: fields, ids: ids };
  };

  /** The form changed: a shown preview no longer matches it. */
  Page.prototype.edited = function () {
    if (this.preview && !this.preview.stale) {
      this.preview.stale = true;
      this.preview.staleNote.hidden = false;
    }
  };

  // ---- errors ----

  Page.prototype.clearErrors = function () {
    this.cards.forEach(function (card) {
      card.error.hidden = true;
      clear(card.error);
      card.node.classList.remove('fp-has-error');
      card.fields.forEach(function (f) {
        f.error.hidden = true;
        f.error.textContent = '';
        f.node.classList.remove('fp-has-error');
        if (f.clearRowErrors) {
          f.clearRowErrors();
        }
      });
    });
  };

  /**
   * Shows featpkg's error message as is where it belongs (the field, the
   * rule's cell, the card) and returns the element to scroll to, or null
   * when it belongs to no feature on the page.
   */
  Page.prototype.placeError = function (error) {
    var target = errorTarget(error);
    var message = str(error && error.message);
    var card = null;
    for (var i = 0; i < this.cards.length; i++) {
      if (this.cards[i].id === target.feature) {
        card = this.cards[i];
      }
    }
    if (!card) {
      return null;
    }
    card.node.classList.add('fp-has-error');
    var field = null;
    card.fields.forEach(function (f) {
      if (f.param.name === target.param) {
        field = f;
      }
    });
    if (field) {
      if (card.details) {
        card.details.open = true;
      }
      field.node.classList.add('fp-has-error');
      if (target.row !== null && field.rowCells) {
        var cell = field.rowCells(target.row, target.field);
        if (cell) {
          cell.error.textContent = message;
          cell.error.hidden = false;
          if (cell.row) {
            cell.tr.hidden = false;
          }
          return cell.focus;
        }
      }
      field.error.textContent = message;
      field.error.hidden = false;
      return field.focus || field.node;
    }
    clear(card.error);
    card.error.appendChild(this.el('div', { class: 'fp-message', text: message }));
    card.error.hidden = false;
    return card.error;
  };

  // ---- activity panel (preview, jobs, results) ----

  Page.prototype.panel = function (title) {
    var box = this.slot('activity');
    clear(box);
    box.hidden = false;
    box.className = 'fp-activity';
    box.setAttribute('aria-live', 'polite');
    this.preview = null;
    if (title) {
      box.appendChild(this.el('h3', { class: 'fp-activity-title', text: title }));
    }
    return box;
  };

  Page.prototype.renderErrorBox = function (box, message, title, target) {
    var self = this;
    var alert = this.el('div', { class: 'fp-alert fp-alert-error', role: 'alert' }, [
      title ? this.el('div', { class: 'fp-alert-title', text: title }) : null,
      this.el('div', { class: 'fp-message', text: message })
    ]);
    if (target) {
      var show = this.el('button', { type: 'button', class: 'fp-btn fp-btn-small', text: this.t('show_field') });
      show.addEventListener('click', function () {
        self.focusTarget(target);
      });
      alert.appendChild(show);
    }
    box.appendChild(alert);
    return alert;
  };

  Page.prototype.focusTarget = function (target) {
    scrollTo(target);
    if (target && typeof target.focus === 'function') {
      try {
        target.focus({ preventScroll: true });
      } catch (e) {
        target.focus();
      }
    }
  };

  /** featpkg's {"error": …}: at its field, and in the panel. */
  Page.prototype.showFeatpkgError = function (box, error) {
    var target = this.placeError(error);
    this.renderErrorBox(box, str(error.message), this.t('refused_title'), target);
    if (target) {
      this.focusTarget(target);
    }
  };

  Page.prototype.renderDiff = function (text) {
    var self = this;
    var pre = this.el('pre', { class: 'fp-diff' });
    diffLines(text).forEach(function (l) {
      pre.appendChild(self.el('span', { class: 'fp-diff-line fp-diff-' + l.kind, text: l.text }));
      pre.appendChild(self.doc.createTextNode('\n'));
    });
    return pre;
  };

  /** featpkg's JSON result (a dry run or a change): summary, warnings, changes, reload output. */
  Page.prototype.renderResult = function (box, result, dryRun) {
    var self = this;
    if (result.summary) {
      box.appendChild(this.el('p', { class: 'fp-result-summary', text: str(result.summary) }));
    }
    var warnings = flattenMessages(result.warnings);
    if (warnings.length) {
      box.appendChild(this.el('div', { class: 'fp-alert fp-alert-warning fp-warnings', role: 'alert' }, [
        this.el('div', { class: 'fp-alert-title', text: this.t('warnings_title') }),
        this.el('ul', null, warnings.map(function (w) {
          return self.el('li', { text: w });
        }))
      ]));
    }
    var changes = Array.isArray(result.changes) ? result.changes.filter(isObject) : [];
    if (dryRun && (result.changed === false || !changes.length)) {
      box.appendChild(this.el('p', { class: 'fp-note', text: this.t('preview_nothing') }));
    }
    if (changes.length) {
      box.appendChild(this.el('h4', { class: 'fp-subtitle', text: dryRun ? this.t('changes_title') : this.t('changes_done_title') }));
      changes.forEach(function (c) {
        box.appendChild(self.el('div', { class: 'fp-change' }, [
          self.el('div', { class: 'fp-change-path' }, [self.el('code', { class: 'fp-path', text: str(c.path) })]),
          c.diff ? self.renderDiff(c.diff) : null
        ]));
      });
    }
    var reload = flattenMessages(result.reload);
    if (reload.length) {
      box.appendChild(this.el('details', { class: 'fp-reload' }, [
        this.el('summary', { text: this.t('reload_title') }),
        this.el('pre', { class: 'fp-output', text: reload.join('\n') })
      ]));
    }
  };

  Page.prototype.doPreview = async function () {
    if (this.busy) {
      return;
    }
    var req = this.requestFields();
    this.clearErrors();
    var box = this.panel(this.t('preview_title'));
    if (!req.ids.length) {
      box.appendChild(this.el('p', { class: 'fp-alert fp-alert-warning', role: 'alert', text: this.t('nothing_selected') }));
      return;
    }
    var wait = this.el('p', { class: 'fp-wait', text: this.t('busy_preview') });
    box.appendChild(wait);
    this.setBusy(true);
    try {
      var result = await this.call('preview', req.fields);
      box.removeChild(wait);
      var err = resultError(result);
      if (err) {
        this.showFeatpkgError(box, err);
      } else if (isObject(result)) {
        var stale = this.el('p', { class: 'fp-alert fp-alert-warning fp-stale', text: this.t('preview_stale'), hidden: true });
        box.appendChild(stale);
        this.renderResult(box, result, true);
        this.preview = { stale: false, staleNote: stale };
      }
    } catch (e) {
      if (wait.parentNode) {
        box.removeChild(wait);
      }
      this.renderErrorBox(box, this.errorText(e));
    } finally {
      this.setBusy(false);
    }
  };

  Page.prototype.doApply = function () {
    if (this.busy) {
      return;
    }
    var req = this.requestFields();
    if (!req.ids.length) {
      this.clearErrors();
      var box = this.panel(this.t('job_apply'));
      box.appendChild(this.el('p', { class: 'fp-alert fp-alert-warning', role: 'alert', text: this.t('nothing_selected') }));
      return;
    }
    this.runJob('apply', req.fields, null);
  };

  Page.prototype.renderSteps = function (box) {
    var self = this;
    var ol = this.el('ol', { class: 'fp-steps' });
    var items = {};
    STEPS.forEach(function (s) {
      var state = self.el('span', { class: 'fp-step-state' });
      var li = self.el('li', { class: 'fp-step fp-step-pending', 'data-step': s }, [
        self.el('span', { class: 'fp-step-label', text: self.t('step_' + s) }),
        ' ',
        state
      ]);
      items[s] = { li: li, state: state };
      ol.appendChild(li);
    });
    box.appendChild(ol);
    return function update(reached, jobState) {
      stepStates(reached, jobState).forEach(function (x) {
        var it = items[x.step];
        it.li.className = 'fp-step fp-step-' + x.mark;
        it.state.textContent = self.t('step_' + x.mark);
      });
    };
  };

  /** Polls a job every POLL_MS until it is no longer running; updates the steps. */
  Page.prototype.pollJob = async function (id, updateSteps) {
    var failures = 0;
    var wait = 300;
    for (;;) {
      await sleep(wait);
      wait = POLL_MS;
      var job;
      try {
        job = await this.call('job', { id: id });
        failures = 0;
      } catch (e) {
        var transient = !e.status || e.status >= 500;
        failures += 1;
        if (!transient || failures >= POLL_TOLERANCE) {
          var lost = new Error(this.t('err_poll_lost', { message: this.errorText(e) }));
          lost.status = e.status;
          throw lost;
        }
        continue;
      }
      if (!isObject(job)) {
        continue;
      }
      var state = job.state === 'done' || job.state === 'failed' ? job.state : 'running';
      updateSteps(job.steps, state);
      if (state !== 'running') {
        job.state = state;
        return job;
      }
    }
  };

  Page.prototype.jobTitle = function (kind, feature) {
    if (kind === 'remove') {
      return this.t('job_remove', { feature: feature || '' });
    }
    if (kind === 'rollback') {
      return this.t('job_rollback');
    }
    if (kind === 'apply') {
      return this.t('job_apply');
    }
    return this.t('job_resume');
  };

  /**
   * apply / remove / rollback: starts the job, shows plan → write → reload →
   * verify as they happen, then reloads schema and status and shows the
   * result or the error (at its field when it names one).
   */
  Page.prototype.runJob = async function (kind, fields, feature, existingId) {
    if (this.busy) {
      return;
    }
    this.setBusy(true);
    this.clearErrors();
    var box = this.panel(this.jobTitle(kind, feature));
    var updateSteps = this.renderSteps(box);
    scrollTo(box);
    var job = null;
    var failure = null;
    try {
      var id = existingId;
      if (!id) {
        var started = await this.call(kind, fields);
        id = isObject(started) && typeof started.job === 'string' ? started.job : '';
        if (!id) {
          throw new Error(this.t('err_no_job'));
        }
      }
      job = await this.pollJob(id, updateSteps);
    } catch (e) {
      failure = e;
    }
    var wait = this.el('p', { class: 'fp-wait', text: this.t('refreshing') });
    box.appendChild(wait);
    // After a successful apply or rollback the page shows the new truth;
    // otherwise the admin's selection and edits are kept (a removed feature's are dropped).
    var succeeded = job && job.state === 'done';
    var keep = null;
    if (!succeeded || kind === 'remove' || kind === 'resume') {
      keep = this.snapshotEdits(kind === 'remove' && succeeded ? feature : null);
    }
    try {
      await this.load({ keep: keep });
    } catch (e) {
      this.showPageError(this.t('load_failed', { message: this.errorText(e) }));
    }
    if (wait.parentNode) {
      box.removeChild(wait);
    }
    this.setBusy(false);
    if (failure) {
      this.renderErrorBox(box, this.errorText(failure), this.t('job_failed'));
      return;
    }
    var err = resultError(job.result);
    if (job.state === 'done' && !err) {
      box.appendChild(this.el('p', { class: 'fp-alert fp-alert-success', role: 'status', text: this.t('job_done') }));
      if (isObject(job.result)) {
        this.renderResult(box, job.result, false);
      }
      return;
    }
    var details = str(job.message).trim();
    if (err) {
      this.showFeatpkgError(box, err);
      if (details && details.indexOf(err.message) < 0) {
        box.appendChild(this.el('details', { class: 'fp-job-details' }, [
          this.el('summary', { text: this.t('job_details') }),
          this.el('pre', { class: 'fp-output', text: details })
        ]));
      }
    } else {
      this.renderErrorBox(box, details || this.t('job_failed'), this.t('job_failed'));
      if (isObject(job.result)) {
        this.renderResult(box, job.result, false);
      }
    }
  };

  /** A job that was running when the page opened: follow it like one started here. */
  Page.prototype.resumeJob = function (id) {
    this.runJob('resume', null, null, id);
  };

  Page.prototype.refresh = async function () {
    if (this.busy) {
      return;
    }
    this.setBusy(true);
    var keep = this.snapshotEdits(null);
    try {
      await this.load({ keep: keep });
    } catch (e) {
      this.showPageError(this.t('load_failed', { message: this.errorText(e) }), true);
    } finally {
      this.setBusy(false);
    }
  };

  /** Starts the page on #featpkg-settings (once). Returns the Page, or null. */
  function boot(doc, win) {
    doc = doc || (typeof document !== 'undefined' ? document : null);
    win = win || (typeof window !== 'undefined' ? window : {});
    var root = doc ? doc.getElementById('featpkg-settings') : null;
    if (!root || root.getAttribute('data-fp-started') === '1') {
      return null;
    }
    root.setAttribute('data-fp-started', '1');
    var page = new Page(root, {
      window: win,
      fetch: typeof win.fetch === 'function' ? win.fetch.bind(win) : null
    });
    page.start();
    return page;
  }

  return {
    STRINGS: STRINGS,
    STEPS: STEPS,
    t: t,
    pickLanguage: pickLanguage,
    normalizeLang: normalizeLang,
    actionUrl: actionUrl,
    encodeForm: encodeForm,
    flattenMessages: flattenMessages,
    parseReply: parseReply,
    callAction: callAction,
    detectPbx: detectPbx,
    splitDestination: splitDestination,
    joinDestination: joinDestination,
    queueRulesFromJson: queueRulesFromJson,
    queueRulesToJson: queueRulesToJson,
    paramControlSpec: paramControlSpec,
    normalizeRaw: normalizeRaw,
    effectiveValue: effectiveValue,
    sameValue: sameValue,
    unsupportedReason: unsupportedReason,
    statusAfterLoad: statusAfterLoad,
    installedFeatures: installedFeatures,
    parseDriftEdit: parseDriftEdit,
    driftByFeature: driftByFeature,
    savedValues: savedValues,
    initialFormState: initialFormState,
    collectParams: collectParams,
    selectedFeatures: selectedFeatures,
    paramHint: paramHint,
    errorTarget: errorTarget,
    resultError: resultError,
    diffLineClass: diffLineClass,
    diffLines: diffLines,
    stepStates: stepStates,
    Page: Page,
    boot: boot
  };
})();

if (typeof window !== 'undefined' && typeof document !== 'undefined') {
  window.FeatpkgSettings = FeatpkgSettings;
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', function () {
      FeatpkgSettings.boot(document, window);
    });
  } else {
    FeatpkgSettings.boot(document, window);
  }
}

if (typeof module !== 'undefined' && module.exports) {
  module.exports = {
    STRINGS: FeatpkgSettings.STRINGS,
    STEPS: FeatpkgSettings.STEPS,
    t: FeatpkgSettings.t,
    pickLanguage: FeatpkgSettings.pickLanguage,
    normalizeLang: FeatpkgSettings.normalizeLang,
    actionUrl: FeatpkgSettings.actionUrl,
    encodeForm: FeatpkgSettings.encodeForm,
    flattenMessages: FeatpkgSettings.flattenMessages,
    parseReply: FeatpkgSettings.parseReply,
    callAction: FeatpkgSettings.callAction,
    detectPbx: FeatpkgSettings.detectPbx,
    splitDestination: FeatpkgSettings.splitDestination,
    joinDestination: FeatpkgSettings.joinDestination,
    queueRulesFromJson: FeatpkgSettings.queueRulesFromJson,
    queueRulesToJson: FeatpkgSettings.queueRulesToJson,
    paramControlSpec: FeatpkgSettings.paramControlSpec,
    normalizeRaw: FeatpkgSettings.normalizeRaw,
    effectiveValue: FeatpkgSettings.effectiveValue,
    sameValue: FeatpkgSettings.sameValue,
    unsupportedReason: FeatpkgSettings.unsupportedReason,
    statusAfterLoad: FeatpkgSettings.statusAfterLoad,
    installedFeatures: FeatpkgSettings.installedFeatures,
    parseDriftEdit: FeatpkgSettings.parseDriftEdit,
    driftByFeature: FeatpkgSettings.driftByFeature,
    savedValues: FeatpkgSettings.savedValues,
    initialFormState: FeatpkgSettings.initialFormState,
    collectParams: FeatpkgSettings.collectParams,
    selectedFeatures: FeatpkgSettings.selectedFeatures,
    paramHint: FeatpkgSettings.paramHint,
    errorTarget: FeatpkgSettings.errorTarget,
    resultError: FeatpkgSettings.resultError,
    diffLineClass: FeatpkgSettings.diffLineClass,
    diffLines: FeatpkgSettings.diffLines,
    stepStates: FeatpkgSettings.stepStates
  };
}
